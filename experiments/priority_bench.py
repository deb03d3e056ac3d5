"""dgs bench's `priorities` section: interactive requests beside batch jobs.

Open loop on loopback: interactive requests (n = 16..256) arrive as a Poisson process at
INTERACTIVE_LOAD of the offline capacity, on top of Poisson batch requests (n = 10,000 and
up) that bring the total to each of LOADS. The same arrivals (same seeds) go to a server with
today's fair share (SCHEDULING=fair) and to one with priorities, and the interactive stream
alone to an otherwise idle server. Batch throughput is the batch class's row-steps per second
inside the arrival window, from the server's own counter (sampler_row_steps_total), so a
few long requests finishing just after the window do not decide it.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families

from experiments.bench_spec import verdict
from experiments.loadgen import JSON, _client, closed_loop
from experiments.serving import running_server

INTERACTIVE_SIZES = (16, 32, 64, 128, 256)
# On the 2-core CPU a 100,000-row request of 100 steps is 50 s of the whole machine: there,
# batch jobs are 10,000 and 20,000 rows, so that a 40 s window holds a dozen of them.
BATCH_SIZES = {"cpu": (10_000, 20_000), "cuda": (10_000, 30_000, 100_000)}
# Batch jobs as an evaluation sweep runs them: 20 deterministic DDIM steps. Interactive
# requests keep the default (DDPM, 100 steps).
BATCH_BODY = {"sampler": "ddim", "steps": 20, "deadline_s": 600}
BATCH_EVALUATIONS = 20
INTERACTIVE_LOAD = 0.2
LOADS = (0.6, 0.9)  # total offered load, interactive included, as a fraction of capacity
NPY = {**JSON, "accept": "application/x-npy"}  # metadata in headers: no JSON to parse


@dataclass(frozen=True)
class Stream:
    priority: str
    rate: float  # requests per second
    sizes: tuple[int, ...]
    body: tuple[tuple[str, object], ...] = ()  # more fields of each request


async def _post(client: aiohttp.ClientSession, body: dict, out: list, t0: float) -> None:
    start = time.perf_counter()
    record = {"priority": body["priority"], "n": body["n"], "ok": False}
    try:
        async with client.post("/sample", data=orjson.dumps(body), headers=NPY) as r:
            await r.read()
            record["status"] = r.status
            if r.status == 200:
                record |= {"ok": True, "queue_s": float(r.headers["x-queue-s"])}
                record["ran_as"] = r.headers.get("x-priority")
    except aiohttp.ClientError:
        record["status"] = "connection"
    record["latency_s"] = time.perf_counter() - start
    record["finished_s"] = time.perf_counter() - t0  # since the first arrival's time zero
    out.append(record)


async def _row_steps(client: aiohttp.ClientSession, priority: str) -> float:
    async with client.get("/metrics") as r:
        text = await r.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "sampler_row_steps_total" and s.labels.get("priority") == priority
    )


async def run_streams(base_url: str, streams: list[Stream], duration: float, seed: int) -> dict:
    """Every stream's Poisson arrivals for `duration` s; waits for every answer."""
    out: list[dict] = []
    tasks = []
    async with _client(base_url, 1000) as client:
        arrivals = []
        for k, s in enumerate(streams):
            rng, t = random.Random(seed * 1000 + k), 0.0
            while s.rate > 0:
                t += rng.expovariate(s.rate)
                if t > duration:
                    break
                arrivals.append((t, s.priority, rng.choice(s.sizes), dict(s.body)))
        arrivals.sort(key=lambda a: a[0])
        batch_before = await _row_steps(client, "batch")
        start = time.perf_counter()
        for i, (t, priority, n, extra) in enumerate(arrivals):
            delay = start + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = {"dataset": "moons", "n": n, "seed": i, "priority": priority, **extra}
            tasks.append(asyncio.create_task(_post(client, body, out, start)))
        await asyncio.sleep(max(0.0, start + duration - time.perf_counter()))
        window = time.perf_counter() - start
        batch_after = await _row_steps(client, "batch")
        await asyncio.gather(*tasks)
    return {
        "requests": out,
        "batch_row_steps_per_s": (batch_after - batch_before) / window,
    }


def summarise(result: dict) -> dict:
    reqs = result["requests"]
    inter = [r for r in reqs if r["priority"] == "interactive"]
    batch = [r for r in reqs if r["priority"] == "batch"]

    def pct(rs: list[dict], q: float) -> float:
        lat = [r["latency_s"] for r in rs if r["ok"]]
        return float(np.percentile(lat, q)) if lat else float("nan")

    return {
        "interactive": {
            "requests": len(inter),
            "errors": sum(not r["ok"] for r in inter),
            "p50_s": pct(inter, 50),
            "p95_s": pct(inter, 95),
            "p99_s": pct(inter, 99),
            "p99_s_by_n": {
                str(n): pct([r for r in inter if r["n"] == n], 99) for n in INTERACTIVE_SIZES
            },
        },
        "batch": {
            "requests": len(batch),
            "errors": sum(not r["ok"] for r in batch),
            "row_steps_per_s": result["batch_row_steps_per_s"],
            # all of the batch work over the time until its last answer, drain included: a
            # scheduler that only delays batch work past the window is not charged for it here
            "whole_run_row_steps_per_s": sum(r["n"] for r in batch if r["ok"])
            * BATCH_EVALUATIONS
            / max((r["finished_s"] for r in batch), default=float("inf")),
            "longest_queue_s": max((r["queue_s"] for r in batch if r["ok"]), default=0.0),
            "longest_latency_s": max((r["latency_s"] for r in batch if r["ok"]), default=0.0),
        },
    }


def priorities(store: Path, capacity: float, steps: int, device: str, duration: float, bar) -> dict:
    """capacity: the offline sample-steps/s at a large n on this device."""
    batch_sizes = BATCH_SIZES["cuda" if device == "cuda" else "cpu"]

    def rate(load: float, sizes: tuple[int, ...], evaluations: int) -> float:
        return load * capacity / (float(np.mean(sizes)) * evaluations)

    inter_rate = rate(INTERACTIVE_LOAD, INTERACTIVE_SIZES, steps)
    interactive = Stream("interactive", inter_rate, INTERACTIVE_SIZES)
    runs = []

    def run(label: str, scheduling: str, order: str, load: float | None) -> None:
        streams = [interactive]
        if load is not None:
            batch_rate = rate(load - INTERACTIVE_LOAD, batch_sizes, BATCH_EVALUATIONS)
            streams.append(Stream("batch", batch_rate, batch_sizes, tuple(BATCH_BODY.items())))
        result = asyncio.run(run_streams(base, streams, duration, seed=1))
        runs.append(
            {"run": label, "scheduling": scheduling, "order": order, "load": load}
            | summarise(result)
        )
        bar.update(1)

    env = {"MAX_ROWS_PER_STEP": 4096, "DEVICE": device, "MAX_DEADLINE_S": 600}
    for scheduling, order, plan in (
        ("priority", "deadline", [("alone", None), *((f"priority {x}", x) for x in LOADS)]),
        ("fair", "deadline", [(f"fair {x}", x) for x in LOADS]),
        ("priority", "remaining", [(f"priority, least work first {LOADS[-1]}", LOADS[-1])]),
    ):
        with running_server(store, SCHEDULING=scheduling, INTERACTIVE_ORDER=order, **env) as base:
            asyncio.run(closed_loop(base, 4, 16, 2))  # warm the server and the connections
            for label, load in plan:
                run(label, scheduling, order, load)
    return {
        "capacity_sample_steps_per_s": capacity,
        "duration_s": duration,
        "interactive_sizes": list(INTERACTIVE_SIZES),
        "batch_sizes": list(batch_sizes),
        "interactive_load": INTERACTIVE_LOAD,
        "runs": runs,
    }


RUNS = 6  # for the progress bar


def render(s: dict) -> list[str]:
    lines = [
        "## Priorities: interactive requests beside batch jobs (Poisson arrivals, real server)",
        "",
        f"Interactive n = {', '.join(map(str, s['interactive_sizes']))} at "
        f"{s['interactive_load']:.0%} of capacity; batch n = "
        f"{', '.join(f'{n:,}' for n in s['batch_sizes'])} (DDIM, 20 steps) bringing the "
        "total to each load; "
        f"{s['duration_s']:.0f} s of arrivals per run; capacity "
        f"{s['capacity_sample_steps_per_s']:,.0f} sample-steps/s (offline).",
        "",
        "| run | load | interactive p50 s | p95 s | p99 s | p99 s, n = 16 | p99 s, n = 256 "
        "| batch requests | batch row-steps/s in window | over the whole run "
        "| longest batch queue s | longest batch s | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s["runs"]:
        i, b = r["interactive"], r["batch"]
        load = "-" if r["load"] is None else f"{r['load']:.1f}"
        lines.append(
            f"| {r['run']} | {load} | {i['p50_s']:.3f} | {i['p95_s']:.3f} | {i['p99_s']:.3f} | "
            f"{i['p99_s_by_n']['16']:.3f} | {i['p99_s_by_n']['256']:.3f} | {b['requests']} | "
            f"{b['row_steps_per_s']:,.0f} | {b.get('whole_run_row_steps_per_s', 0):,.0f} | "
            f"{b['longest_queue_s']:.2f} | "
            f"{b['longest_latency_s']:.2f} | {i['errors'] + b['errors']} |"
        )
    by = {r["run"]: r for r in s["runs"]}
    alone = by["alone"]["interactive"]["p99_s"]
    lines.append("")
    for load in LOADS:
        pri, fair = by[f"priority {load}"], by[f"fair {load}"]
        p99, fair_p99 = pri["interactive"]["p99_s"], fair["interactive"]["p99_s"]
        kept = pri["batch"]["row_steps_per_s"] / max(fair["batch"]["row_steps_per_s"], 1e-9)
        whole = pri["batch"].get("whole_run_row_steps_per_s", 0) / max(
            fair["batch"].get("whole_run_row_steps_per_s", 0), 1e-9
        )
        errors = pri["batch"]["errors"]
        lines += [
            f"- Load {load}: interactive p99 {p99:.3f} s = {p99 / alone:.2f}x alone "
            f"({alone:.3f} s; target <= 2x) - {verdict(p99 <= 2 * alone)}; "
            f"{fair_p99 / p99:.1f}x lower than fair share ({fair_p99:.3f} s; target >= 5x) - "
            f"{verdict(fair_p99 >= 5 * p99)}.",
            f"- Load {load}: batch throughput {kept:.0%} of fair share's inside the window "
            f"(target >= 90%) - {verdict(kept >= 0.9)}; over the whole run {whole:.0%} - "
            f"{verdict(whole >= 0.9)}; longest batch queue wait "
            f"{pri['batch']['longest_queue_s']:.2f} s, {errors} batch request(s) failed.",
        ]
    last = LOADS[-1]
    edf = by[f"priority {last}"]["interactive"]
    srpt = by[f"priority, least work first {last}"]["interactive"]
    lines += [
        f"- Interactive order at load {last}: earliest deadline p99 {edf['p99_s']:.3f} s, "
        f"least remaining work p99 {srpt['p99_s']:.3f} s.",
        "",
    ]
    return lines
