"""What the README tells operators about where work runs, held against the code."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from service.api.state import AppState

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_says_where_the_likelihood_solve_runs_and_the_code_agrees():
    text = README.read_text()
    start = text.index("**Where it runs.**")
    claim = text[start : text.index("\n\n", start)]
    assert "`loglik` pool" in claim and "not the engine's" in claim
    assert "one solve at a time" in claim
    # the old, wrong claim is gone
    assert "runs on the engine thread between denoising steps" not in text
    factory = next(f for f in fields(AppState) if f.name == "loglik_pool").default_factory
    pool = factory()
    try:
        assert pool._thread_name_prefix == "loglik" and pool._max_workers == 1
    finally:
        pool.shutdown()
