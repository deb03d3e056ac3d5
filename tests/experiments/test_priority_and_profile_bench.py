"""dgs bench's `priorities` and `profile` sections on the tiny models (no speed is asserted)."""

from __future__ import annotations

import asyncio

from experiments import priority_bench, profile_bench
from experiments.priority_bench import BATCH_BODY, Stream, run_streams, summarise


def test_priority_streams_run_in_their_class_and_count_the_batch_rows(server):
    streams = [
        Stream("interactive", 8.0, (16, 64)),
        Stream("batch", 3.0, (2000,), tuple(BATCH_BODY.items())),
    ]
    # the session's server of the tiny store (tests/servers.py)
    result = asyncio.run(run_streams(str(server.base_url), streams, 1.5, seed=0))
    reqs = result["requests"]
    assert all(r["ok"] and r["ran_as"] == r["priority"] for r in reqs)
    s = summarise(result)
    assert s["interactive"]["requests"] > 5 and s["batch"]["requests"] > 0
    assert s["interactive"]["p99_s"] >= s["interactive"]["p50_s"] > 0
    assert result["batch_row_steps_per_s"] > 0
    runs = [
        {"run": label, "scheduling": "priority", "order": "deadline", "load": load} | s
        for label, load in [
            ("alone", None),
            *((f"{kind} {x}", x) for kind in ("priority", "fair") for x in priority_bench.LOADS),
            (f"priority, least work first {priority_bench.LOADS[-1]}", priority_bench.LOADS[-1]),
        ]
    ]
    report = {
        "capacity_sample_steps_per_s": 1e5,
        "duration_s": 1.5,
        "interactive_sizes": [16, 64],
        "batch_sizes": [2000],
        "interactive_load": 0.2,
        "runs": runs,
    }
    md = "\n".join(priority_bench.render(report))
    assert "= 1.00x alone" in md and "batch throughput 100% of fair share's" in md


def test_the_profile_accounts_for_every_second_of_a_step(plain_model):
    off = profile_bench.offline_profile(plain_model, peak=1e11, n=512)
    groups = off["seconds_by_group"]
    assert groups["GEMM"] > 0
    assert abs(sum(groups.values()) - off["profiled_wall_s"]) < 1e-6
    srv = profile_bench.serving_step_profile(plain_model, repeats=3)
    assert srv["step_s_64x16"] > 0 and srv["step_s_1x1024"] > 0 and srv["step_s_64x1"] > 0
    assert srv["host_s_per_chunk"] == (srv["step_s_64x1"] - srv["step_s_1x64"]) / 64
    md = "\n".join(profile_bench.render({"offline": off, "serving_step": srv}))
    assert "| GEMM |" in md and "64 requests x 16 rows" in md
