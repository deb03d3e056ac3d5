"""What `dgs bench` runs, and how its report words a target. No third-party imports: the CLI
reads SECTIONS for `dgs --help` on an install without the experiments extra."""

from __future__ import annotations

SECTIONS = (
    "sampler",
    "guidance",
    "service",
    "stream",
    "schedulers",
    "priorities",
    "overload",
    "profile",
    "training",
    "refactor",
    "exact",
    "few_step",
    "sweep",
    "sweep_latency",
    "loglik",
)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"
