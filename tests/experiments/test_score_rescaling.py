"""The score-rescaling table against values worked out by hand from the paper's schedule."""

import math

import pytest

from experiments.score_rescaling import render, rows


def test_the_papers_defaults_reverse_the_score_near_the_data():
    table = {(r["recipe"], r["variant"]): r for r in rows()}
    fixed = table["paper", "fixed"]
    # the linear schedule's first beta is 1e-4, so sigma_0 = sqrt(1e-4) = 0.01; gamma = 0.1
    assert fixed["sigma_last"] == pytest.approx(0.01)
    assert fixed["c_last"] == pytest.approx(1 - 0.1 / 0.01)
    # gamma > sigma_t exactly on the steps where sigma_t < 0.1: alpha_bar_t > 0.99
    assert 0 < fixed["steps_reversed"] < 20
    smoothed = table["paper", "smoothed"]  # gamma_0 = 0.01 = sigma_0: the score cancelled
    assert smoothed["c_last"] == pytest.approx(0.0, abs=1e-9)
    assert all(math.isfinite(r["c_first"]) and r["c_first"] <= 1 for r in table.values())
    assert "| paper (sigma_0 = 0.010) | fixed | 0.1 |" in render(list(table.values()))
