"""The dashboards: committed JSON == what the generator builds, and a valid Grafana model."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import yaml
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from service.api.metrics import Metrics
from tests.deploy.conftest import DEPLOY

spec = importlib.util.spec_from_file_location(
    "build_dashboards", DEPLOY / "grafana" / "build_dashboards.py"
)
build = importlib.util.module_from_spec(spec)
sys.modules["build_dashboards"] = build  # dataclasses look their module up there
spec.loader.exec_module(build)


def committed(name: str) -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / name).read_text())


def test_committed_json_is_what_the_source_builds():
    for name in build.DASHBOARDS:
        path = DEPLOY / "grafana" / "dashboards" / name
        assert path.read_text() == build.render(name), f"{name} is stale: rebuild it"


def test_dashboards_load_as_grafana_models():
    register_default_plugins()
    for name in build.DASHBOARDS:
        raw = committed(name)
        model = Dashboard.from_json(raw)
        assert model.title == raw["title"] and model.uid == raw["uid"]
        assert len(model.panels) == len(raw["panels"])
        again = json.loads(build.JSONEncoder(sort_keys=True).encode(model))
        kept = ("type", "title", "gridPos", "datasource")
        assert [{k: p.get(k) for k in kept} for p in again["panels"]] == [
            {k: p.get(k) for k in kept} for p in raw["panels"]
        ]
        assert build.expressions(again) == build.expressions(raw)


def test_latency_dashboard_covers_the_issue():
    board = committed("sampler-latency.json")
    assert board["title"] == "Sampler latency"
    titles = {p["title"] for p in board["panels"]}
    for needed in (
        "Request latency by endpoint",
        "POST /sample latency by variant",
        "Request rate by endpoint",
        "Error rate by status",
        "Queue wait p95 by dataset",
        "Queue rows",
        "Batch rows distribution",
        "Samples per second",
        "KL divergence by dataset and variant",
        "Seconds per sample",
    ):
        assert needed in titles
    exprs = [e for _, e in build.expressions(board)]
    for q in ("0.5", "0.95", "0.99"):
        assert any(
            f"histogram_quantile({q}" in e and "_bucket" in e and "rate(" in e for e in exprs
        )


def test_sweeps_row_covers_the_sweep_metrics():
    panels = committed("sampler-latency.json")["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Sweeps")
    row = []
    for p in panels[start + 1 :]:
        if p["type"] == "row":
            break
        row.append(p)
    assert {p["title"] for p in row} == {
        "Sweeps in hand",
        "Sweep cells done per second",
        "Sweep cells failed per second",
        "Sweep cells in flight",
    }
    exprs = [e for _, e in build.expressions({"panels": row})]
    assert any("sampler_sweeps_in_hand" in e for e in exprs)
    assert any("sampler_sweep_cells_in_flight" in e for e in exprs)
    for outcome in ("done", "failed"):
        assert any(
            f'sampler_sweep_cells_total{{outcome="{outcome}"}}' in e and "rate(" in e for e in exprs
        ), outcome


def test_likelihood_row_covers_the_solver_s_metrics():
    panels = committed("sampler-latency.json")["panels"]
    start = next(
        i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Likelihood"
    )
    row = []
    for p in panels[start + 1 :]:
        if p["type"] == "row":
            break
        row.append(p)
    exprs = " ".join(e for _, e in build.expressions({"panels": row}))
    for metric in (
        "sampler_loglik_work_ahead_seconds",
        "sampler_loglik_solves_total",
        "sampler_loglik_evaluations_total",
        "sampler_loglik_solve_seconds_bucket",
    ):
        assert metric in exprs, metric


def test_queries_use_only_metrics_the_service_exports():
    known = {m.name for m in Metrics().registry.collect()}
    series = set()
    for m in known:
        series |= {m, f"{m}_total", f"{m}_bucket", f"{m}_sum", f"{m}_count"}
    for title, expr in build.expressions(committed("sampler-latency.json")):
        for name in re.findall(r"\b(sampler_[a-z_]+)\b", expr):
            assert name in series, (title, name)


def test_provisioning_points_at_the_dashboards_datasource():
    ds = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    uids = {
        t["datasource"]["uid"]
        for p in committed("sampler-latency.json")["panels"]
        for t in p.get("targets", [])
    }
    assert uids == {ds["uid"]} and ds["url"] == "http://prometheus:9090"
