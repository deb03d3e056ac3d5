"""dgs bench's `stream` section: what watching costs. The same bodies through /sample and
/sample/stream (every evaluation reported, the most previews a server allows), alternated in
one run against one warm server, through service.client."""

from __future__ import annotations

import statistics
import time

from service.client import Client, Samples

SIZES = (256, 4096)
PREVIEW_ROWS = 512  # the server's default MAX_PREVIEW_ROWS
TARGET = 1.25  # stream / sample latency at the largest n, every evaluation reported


def stream_cost(base_url: str, repeats: int, bar) -> dict:
    rows = []
    with Client(base_url, timeout=300) as client:
        for n in SIZES:
            body = {"n": n, "seed": 0}
            plain, streamed, events = [], [], 0
            for _ in range(repeats):
                t0 = time.perf_counter()
                client.sample("moons", **body)
                plain.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                got = list(client.stream("moons", every=1, preview_rows=PREVIEW_ROWS, **body))
                streamed.append(time.perf_counter() - t0)
                assert isinstance(got[-1], Samples)
                events = len(got)
            bar.update(1)
            rows.append(
                {
                    "n": n,
                    "sample_s": statistics.median(plain),
                    "stream_s": statistics.median(streamed),
                    "sample_spread_s": [min(plain), max(plain)],
                    "stream_spread_s": [min(streamed), max(streamed)],
                    "events": events,
                    "stream_over_sample": statistics.median(streamed) / statistics.median(plain),
                }
            )
    return {"repeats": repeats, "preview_rows": PREVIEW_ROWS, "rows": rows}


def render(s: dict) -> list[str]:
    lines = [
        "## Streaming: /sample/stream against /sample (same bodies, alternated, one server)",
        "",
        f"Every evaluation reported, previews of {s['preview_rows']} rows; medians of "
        f"{s['repeats']} (min-max in brackets).",
        "",
        "| n | /sample s | /sample/stream s | events | stream / sample |",
        "|---|---|---|---|---|",
    ]
    for r in s["rows"]:
        lo, hi = r["sample_spread_s"]
        slo, shi = r["stream_spread_s"]
        lines.append(
            f"| {r['n']:,} | {r['sample_s']:.3f} ({lo:.3f}-{hi:.3f}) | {r['stream_s']:.3f} "
            f"({slo:.3f}-{shi:.3f}) | {r['events']} | {r['stream_over_sample']:.2f}x |"
        )
    big = s["rows"][-1]
    ok = big["stream_over_sample"] <= TARGET
    lines += [
        "",
        f"- Target stream / sample <= {TARGET}x at n = {big['n']:,}: "
        f"{big['stream_over_sample']:.2f}x - {'met' if ok else '**missed**'}.",
        "",
    ]
    return lines
