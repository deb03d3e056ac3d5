"""bench.json -> bench.md: tables, and each target met or missed."""

from __future__ import annotations

from experiments import (
    exact_bench,
    few_step_bench,
    guidance_bench,
    loglik_bench,
    priority_bench,
    profile_bench,
    refactor_bench,
    stream_bench,
    sweep_bench,
    sweep_latency_bench,
)
from experiments.bench_spec import verdict


def _sampler(s: dict) -> list[str]:
    lines = [
        "## Sampler throughput (offline, one request)",
        "",
        f"Roofline: {s['roofline_sample_steps_per_s']:,.0f} sample-steps/s = peak matmul FLOP/s"
        f" / {s['flops_per_sample_step']:,} FLOPs per sample-step (the network as specified; "
        f"{s['executed_flops_per_sample_step']:,} executed, the time third of the first layer "
        "being a cached lookup).",
        "",
        "| variant | n | seconds | sample-steps/s | of roofline | guided / baseline |",
        "|---|---|---|---|---|---|",
    ]
    for r in s["rows"]:
        roof = f"{r['roofline_fraction']:.0%}" if r["roofline_fraction"] is not None else ""
        lines.append(
            f"| {r['variant']} | {r['n']:,} | {r['seconds']:.3f} | "
            f"{r['sample_steps_per_s']:,.0f} | {roof} | "
            f"{r['guided_over_baseline']:.2f}x |"
        )
    big = [r for r in s["rows"] if r["n"] == max(x["n"] for x in s["rows"])]
    base = next(r for r in big if r["variant"] == "baseline")
    worst = max(r["guided_over_baseline"] for r in big if r["variant"] != "baseline")
    lines += [
        "",
        f"- Target baseline at n = {base['n']:,} >= 70% of the roofline: "
        f"{base['roofline_fraction']:.0%} ({base['roofline_fraction_executed_flops']:.0%} counting "
        f"executed FLOPs only) - {verdict(base['roofline_fraction'] >= 0.7)}.",
        f"- Target guided / baseline <= 2.0x at n = {base['n']:,}: worst variant {worst:.2f}x - "
        f"{verdict(worst <= 2.0)}.",
        "",
    ]
    return lines


def _service(rows: list[dict]) -> list[str]:
    lines = [
        "## Service under concurrent load (real server, closed-loop clients on loopback)",
        "",
        "| batching | clients | n | p50 s | p95 s | p99 s | requests/s | sample-steps/s "
        "| of offline one-batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batching']} | {r['clients']} | {r['n']} | {r['p50_s']:.3f} | "
            f"{r['p95_s']:.3f} | {r['p99_s']:.3f} | {r['requests_per_s']:.1f} | "
            f"{r['sample_steps_per_s']:,.0f} | {r['fraction_of_offline']:.0%} |"
        )
    on = next(r for r in rows if r["batching"] == "on" and r["clients"] == 64 and r["n"] == 16)
    off = next(r for r in rows if r["batching"] == "off" and r["clients"] == 64 and r["n"] == 16)
    gain = on["sample_steps_per_s"] / off["sample_steps_per_s"]
    lines += [
        "",
        f"- Target at C = 64, n = 16, batching on >= 4x off: {gain:.1f}x - {verdict(gain >= 4)}.",
        f"- Target batching on >= 60% of the same work offline as one batch: "
        f"{on['fraction_of_offline']:.0%} - {verdict(on['fraction_of_offline'] >= 0.6)}.",
        "",
    ]
    return lines


def _schedulers(s: dict) -> list[str]:
    rows = s["rows"]
    lines = [
        "## Step-level against request-level batching (Poisson arrivals, n = 16 x3 : 256 x1)",
        "",
        f"Load 1.0 = {s['capacity_requests_per_s']:.1f} requests/s, the offline capacity.",
        "",
        "| scheduler | load | offered req/s | p50 s | p99 s | p99 s, n = 16 | p99 s, n = 256 "
        "| requests/s | sample-steps/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        by_n = r.get("p99_s_by_n", {})
        lines.append(
            f"| {r['scheduler']} | {r['load']:.1f} | {r['rate_per_s']:.1f} | {r['p50_s']:.3f} | "
            f"{r['p99_s']:.3f} | {by_n.get('16', float('nan')):.3f} | "
            f"{by_n.get('256', float('nan')):.3f} | {r['requests_per_s']:.1f} | "
            f"{r['sample_steps_per_s']:,.0f} |"
        )
    by = {(r["scheduler"], r["load"]): r for r in rows}
    medium = [load for load in (0.4, 0.6) if ("step", load) in by]
    ratios = [by["request", load]["p99_s"] / by["step", load]["p99_s"] for load in medium]
    peak = {
        k: max(r["sample_steps_per_s"] for r in rows if r["scheduler"] == k)
        for k in ("step", "request")
    }
    lines += [
        "",
        f"- Target p99 at least 2x lower with step-level at medium load (0.4, 0.6): request / "
        f"step p99 = {', '.join(f'{x:.1f}x' for x in ratios)} - "
        f"{verdict(bool(ratios) and min(ratios) >= 2)}.",
        f"- Target no loss of peak throughput: step {peak['step']:,.0f} vs request "
        f"{peak['request']:,.0f} sample-steps/s - {verdict(peak['step'] >= 0.95 * peak['request'])}"
        " (5% allowed for run-to-run noise).",
        "",
    ]
    return lines


def _overload(o: dict) -> list[str]:
    return [
        "## Overload storm",
        "",
        f"{o['clients']} clients x n = {o['n']:,} for {o['seconds']:.0f} s over the four "
        f"datasets' default models, deadline {o['deadline_s']} s, each refused client waiting "
        f"its Retry-After: {o['admitted']} admitted, {o['ok']} returned 200 "
        f"(others: {o['failed'] or 'none'}), {o['refused']} refused with 503 (slowest refusal "
        f"{o['max_refusal_s'] * 1000:.0f} ms; slowest success {o['max_latency_s']:.1f} s); "
        f"{o.get('connection_errors', 0)} sends found their pooled connection closed by the "
        "server's keep-alive timeout and were sent again (not counted as admitted).",
        f"- Target at least 95% of admitted requests succeed: {o['ok_fraction_of_admitted']:.1%}"
        f" - {verdict(o['ok_fraction_of_admitted'] >= 0.95)}.",
        f"- Target goodput within 20% of idle throughput: {o['goodput_samples_per_s']:,.0f} vs "
        f"{o['idle_samples_per_s']:,.0f} samples/s idle ({o['goodput_fraction_of_idle']:.0%}) - "
        f"{verdict(o['goodput_fraction_of_idle'] >= 0.8)}.",
        "",
    ]


def _renderers():
    return (
        ("sampler", _sampler),
        ("guidance", guidance_bench.render),
        ("service", _service),
        ("stream", stream_bench.render),
        ("schedulers", _schedulers),
        ("priorities", priority_bench.render),
        ("overload", _overload),
        ("profile", profile_bench.render),
        ("refactor", refactor_bench.render),
        ("exact", exact_bench.render),
        ("few_step", few_step_bench.render),
        ("sweep", sweep_bench.render),
        ("sweep_latency", sweep_latency_bench.render),
        ("loglik", loglik_bench.render),
    )


def render(report: dict) -> str:
    m = report["machine"]
    mm = report["matmul_flops"]
    lines = [
        "# Benchmark report",
        "",
        f"Machine: {m['cpu']}; GPU: {m['gpu'] or 'none'}; device used: {report['device']}; "
        f"torch {m['torch']} with {m['torch_threads']} threads; Python {m['python']}. "
        f"Run started {report['started']}.",
        "",
        "Dense float32 matmul: "
        + ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in mm.items() if k != "peak")
        + f"; peak {mm['peak'] / 1e9:,.1f} GFLOP/s.",
        "",
    ]
    for section, render_section in _renderers():  # the report's order, each where it ran
        if section in report:
            lines += render_section(report[section])
    if "training" in report:
        t = report["training"]
        lines += [
            "## Training",
            "",
            f"{t['seconds_per_1000_steps']:.1f} s per 1,000 steps (batch {t['batch_size']}, on the "
            f"{t.get('device', 'cpu').upper()}); the forward+backward FLOP roofline at its "
            f"matmul peak is {t['roofline_seconds_per_1000']:.2f} s: "
            f"{t['roofline_fraction']:.0%} of it.",
            "",
            f"The energy objective (eps = -sigma grad E, so the loss needs a double backward): "
            f"{t['energy_seconds_per_1000_steps']:.1f} s per 1,000 steps, "
            f"{t['energy_over_plain']:.2f}x the plain objective on the same recipe.",
            "",
        ]
    return "\n".join(lines)
