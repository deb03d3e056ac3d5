"""dgs bench's `profile` section: where a sampling step's time goes.

1. Offline baseline sampling at n = 10,000 under torch.profiler: self time per op, in groups
   (GEMMs, activations, other elementwise, copies and concatenation, noise, indexing, the rest),
   and the time outside any op (Python and dispatch) as the profiled wall time minus the ops'.
   The GEMMs' own FLOP rate against the matmul peak separates the kernel's share of the
   roofline gap from everything around it:
   roofline fraction = GEMM efficiency x GEMM share of wall / (executed / specified FLOPs).
2. The serving step's host work: one step over 64 requests of 16 rows (64 chunks, each at its
   own position with its own noise stream) against one request of 1,024 rows (4 chunks), the
   same rows; and 64 requests of 1 row against one of 64, where the GEMMs are negligible.
   The difference is the per-chunk bookkeeping the server pays and the offline loop does
   not; on a GPU it is the same host time, next to kernels of microseconds.
"""

from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile

from service.core.model import ReadyModel
from service.core.network import flops_per_row
from service.core.offline import sample
from service.core.plan import make_plan
from service.core.spec import SampleSpec
from service.core.step import advance, make_chunks

GROUPS = {
    "GEMM": ("aten::addmm", "aten::mm", "aten::matmul", "aten::linear"),
    "activation": ("aten::relu", "aten::relu_", "aten::silu", "aten::clamp_min", "aten::sigmoid"),
    "elementwise": (
        "aten::add",
        "aten::add_",
        "aten::mul",
        "aten::mul_",
        "aten::sub",
        "aten::div",
        "aten::addcmul",
        "aten::neg",
        "aten::sin",
        "aten::cos",
        "aten::sqrt",
    ),
    "copies and concatenation": (
        "aten::cat",
        "aten::copy_",
        "aten::clone",
        "aten::to",
        "aten::_to_copy",
        "aten::contiguous",
        "aten::split",
        "aten::slice",
        "aten::narrow",
        "aten::zeros",
        "aten::new_zeros",
        "aten::empty",
        "aten::fill_",
        "aten::zero_",
    ),
    "noise": ("aten::randn", "aten::normal_"),
    "indexing": (
        "aten::index",
        "aten::repeat_interleave",
        "aten::expand",
        "aten::select",
        "aten::_local_scalar_dense",
        "aten::item",
        "aten::lift_fresh",
        "aten::tensor",
    ),
}
GROUP_OF = {name: group for group, names in GROUPS.items() for name in names}


def _grouped(prof) -> dict[str, float]:
    """Self CPU seconds per group of the profiled ops."""
    out = dict.fromkeys([*GROUPS, "other ops"], 0.0)
    for evt in prof.key_averages():
        out[GROUP_OF.get(evt.key, "other ops")] += evt.self_cpu_time_total / 1e6
    return out


def offline_profile(model: ReadyModel, peak: float, n: int = 10_000) -> dict:
    steps = make_plan(model, SampleSpec(variant="baseline")).evaluations
    sample(model, SampleSpec(variant="baseline", n=n, seed=0))  # warm-up
    start = time.perf_counter()
    sample(model, SampleSpec(variant="baseline", n=n, seed=0))
    wall = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        sample(model, SampleSpec(variant="baseline", n=n, seed=0))
        profiled_wall = time.perf_counter() - start
    groups = _grouped(prof)
    ops = sum(groups.values())
    config = model.network.config
    exec_flops = flops_per_row(config, cached_time=True)
    arch_flops = flops_per_row(config, cached_time=False)
    gemm_rate = n * steps * exec_flops / max(groups["GEMM"], 1e-9)
    return {
        "n": n,
        "steps": steps,
        "wall_s": wall,
        "profiled_wall_s": profiled_wall,
        "seconds_by_group": groups | {"outside ops (Python, dispatch)": profiled_wall - ops},
        "gemm_flops_per_s": gemm_rate,
        "gemm_efficiency": gemm_rate / peak,
        "executed_over_specified_flops": exec_flops / arch_flops,
        "roofline_fraction": n * steps * arch_flops / wall / peak,
    }


def _staggered_chunks(model: ReadyModel, requests: int, rows: int) -> list:
    plan = make_plan(model, SampleSpec(variant="baseline"))
    chunks = [c for i in range(requests) for c in make_chunks(plan, rows, i, model.device)]
    advance(model, chunks)  # draws every chunk's start
    top = plan.evaluations - 2  # leaves room for the timed steps: positions only count down
    for i, c in enumerate(chunks):  # each request at its own stage, as in a busy server
        c.position = top - (i * 7) % (top // 2) if requests > 1 else top
    return chunks


def _step_seconds(model: ReadyModel, chunks: list, repeats: int) -> float:
    positions = [c.position for c in chunks]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            advance(model, chunks)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / repeats)
        for c, p in zip(chunks, positions, strict=True):
            c.position = p
    return best


def serving_step_profile(model: ReadyModel, repeats: int = 20) -> dict:
    # every timed step moves each chunk one position down: stay above position 0
    repeats = max(
        1, min(repeats, (make_plan(model, SampleSpec(variant="baseline")).evaluations - 2) // 2 - 1)
    )
    many = _staggered_chunks(model, 64, 16)
    one = _staggered_chunks(model, 1, 1024)
    many_s, one_s = _step_seconds(model, many, repeats), _step_seconds(model, one, repeats)
    # at one row a request the GEMMs are tiny: the difference is the per-chunk host work alone
    tiny_many = _step_seconds(model, _staggered_chunks(model, 64, 1), repeats)
    tiny_one = _step_seconds(model, _staggered_chunks(model, 1, 64), repeats)
    positions = [c.position for c in many]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(repeats):
            advance(model, many)
        profiled = (time.perf_counter() - start) / repeats
    for c, p in zip(many, positions, strict=True):
        c.position = p
    groups = {k: v / repeats for k, v in _grouped(prof).items()}
    ops = sum(groups.values())
    return {
        "rows": 1024,
        "step_s_64x16": many_s,
        "step_s_1x1024": one_s,
        "host_overhead_s": many_s - one_s,
        "ratio": many_s / one_s,
        "step_s_64x1": tiny_many,
        "step_s_1x64": tiny_one,
        "host_s_per_chunk": (tiny_many - tiny_one) / 64,
        "seconds_by_group_64x16": groups | {"outside ops (Python, dispatch)": profiled - ops},
    }


def render(s: dict) -> list[str]:
    lines = ["## Profile: where a step's time goes (torch.profiler, CPU self time)", ""]
    if "offline" in s:
        lines += _offline(s["offline"])
    return lines + _serving(s["serving_step"])


def _offline(off: dict) -> list[str]:
    lines = [
        f"Offline baseline sampling, n = {off['n']:,}, {off['steps']} steps: "
        f"{off['wall_s']:.2f} s ({off['roofline_fraction']:.0%} of the roofline); profiled "
        f"{off['profiled_wall_s']:.2f} s.",
        "",
        "| group | seconds | share |",
        "|---|---|---|",
    ]
    total = off["profiled_wall_s"]
    for k, v in sorted(off["seconds_by_group"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v:.3f} | {v / total:.0%} |")
    gemm_share = off["seconds_by_group"]["GEMM"] / total
    lines += [
        "",
        f"- The GEMMs ran at {off['gemm_flops_per_s'] / 1e9:,.1f} GFLOP/s, "
        f"{off['gemm_efficiency']:.0%} of the matmul peak, and took {gemm_share:.0%} of the "
        f"time; the network executes {off['executed_over_specified_flops']:.0%} of its "
        "specified FLOPs (the time layer is a cached lookup). Roofline fraction = GEMM "
        "efficiency x GEMM share / executed share = "
        f"{off['gemm_efficiency'] * gemm_share / off['executed_over_specified_flops']:.0%} "
        "(profiled): what stands between the sampler and the roofline is the non-GEMM time.",
        "",
    ]
    return lines


def _serving(srv: dict) -> list[str]:
    lines = [
        f"Serving step, {srv['rows']:,} rows: 64 requests x 16 rows "
        f"{srv['step_s_64x16'] * 1e3:.2f} ms against one request of 1,024 rows "
        f"{srv['step_s_1x1024'] * 1e3:.2f} ms ({srv['ratio']:.2f}x; the per-chunk host work is "
        f"{srv['host_overhead_s'] * 1e3:.2f} ms a step). 64 requests x 1 row "
        f"{srv['step_s_64x1'] * 1e3:.2f} ms against one request of 64 rows "
        f"{srv['step_s_1x64'] * 1e3:.2f} ms: {srv['host_s_per_chunk'] * 1e6:.1f} us of host "
        "work a chunk a step.",
        "",
        "| group (64 x 16 step) | ms | share |",
        "|---|---|---|",
    ]
    step = sum(srv["seconds_by_group_64x16"].values())
    for k, v in sorted(srv["seconds_by_group_64x16"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v * 1e3:.3f} | {v / step:.0%} |")
    lines.append("")
    return lines
