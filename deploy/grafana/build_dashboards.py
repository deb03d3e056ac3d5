"""Build the Grafana dashboards from code (grafana-foundation-sdk) into deploy/grafana/dashboards/.

    python deploy/grafana/build_dashboards.py          # write the JSON files
    python deploy/grafana/build_dashboards.py --check  # exit 1 if a committed file is stale

Every query uses only the metric names fixed in service/api/metrics.py; the end-to-end test
runs each one against a real Prometheus and fails on a panel that returns nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | heatmap | stat
    width: int = 12


def quantiles(metric: str, by: str, where: str = "", qs=(0.5, 0.95, 0.99)) -> tuple[Query, ...]:
    selector = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({selector}[{RATE}])))",
            f"p{round(q * 100)} {{{{{by}}}}}",
        )
        for q in qs
    )


LATENCY_ROWS: dict[str, list[PanelSpec]] = {
    "Latency": [
        PanelSpec(
            "Request latency by endpoint",
            "p50 / p95 / p99 of sampler_request_duration_seconds, POST endpoints.",
            quantiles(
                "sampler_request_duration_seconds", "endpoint", 'endpoint=~"sample|evaluate"'
            ),
            unit="s",
        ),
        PanelSpec(
            "POST /sample latency by variant",
            "p50 / p95 / p99 per guidance variant.",
            quantiles("sampler_request_duration_seconds", "variant", 'endpoint="sample"'),
            unit="s",
        ),
        PanelSpec(
            "Queue wait p95 by dataset",
            "Submission to a request's first denoising step.",
            quantiles("sampler_queue_wait_seconds", "dataset", qs=(0.95,)),
            unit="s",
        ),
        PanelSpec(
            "Compute p95 by variant",
            "First denoising step to last.",
            quantiles("sampler_compute_seconds", "variant", qs=(0.95,)),
            unit="s",
        ),
    ],
    "Priority classes": [
        PanelSpec(
            "Latency by priority class",
            "p50 / p99 of POST /sample, /sample/stream and /evaluate per class: interactive "
            "rows run first in every step, batch rows keep a minimum share (README "
            '"Batching"). SamplerInteractiveP99High fires above 1 s.',
            quantiles(
                "sampler_request_duration_seconds",
                "priority",
                'endpoint=~"sample|sample_stream|evaluate", priority!="none"',
                qs=(0.5, 0.99),
            ),
            unit="s",
        ),
        PanelSpec(
            "Queue wait by priority class",
            "Submission to a request's first denoising step, p50 / p99 per class.",
            quantiles("sampler_queue_wait_seconds", "priority", qs=(0.5, 0.99)),
            unit="s",
        ),
        PanelSpec(
            "Row-steps per second by class",
            "Rows run per second (one row of one network evaluation), per class: the share of "
            "the engine each class gets.",
            (
                Query(
                    f"sum by (priority) (rate(sampler_row_steps_total[{RATE}]))",
                    "{{priority}}",
                ),
            ),
        ),
    ],
    "Traffic and errors": [
        PanelSpec(
            "Request rate by endpoint",
            "Requests answered per second.",
            (Query(f"sum by (endpoint) (rate(sampler_requests_total[{RATE}]))", "{{endpoint}}"),),
            unit="reqps",
        ),
        PanelSpec(
            "Error rate by status",
            "Non-2xx answers per second: 422 bad input, 503 overload or missing model, 504 "
            "deadline, 499 client gone.",
            (
                Query(
                    f'sum by (status) (rate(sampler_requests_total{{status!~"2.."}}[{RATE}]))',
                    "{{status}}",
                ),
            ),
            unit="reqps",
        ),
        PanelSpec(
            "Samples per second",
            "Samples returned by /sample and /evaluate.",
            (
                Query(
                    f"sum by (dataset, variant) (rate(sampler_samples_total[{RATE}]))",
                    "{{dataset}} {{variant}}",
                ),
            ),
            unit="short",
        ),
        PanelSpec(
            "Non-finite samples per second",
            "Samples with a NaN or infinite coordinate (returned as null).",
            (
                Query(
                    f"sum by (dataset, variant) (rate(sampler_nonfinite_samples_total[{RATE}]))",
                    "{{dataset}} {{variant}}",
                ),
            ),
        ),
    ],
    "Queue and batching": [
        PanelSpec(
            "Queue rows",
            "Rows accepted and not yet finished, against the queue's capacity.",
            (
                Query("sum by (dataset) (sampler_queue_rows)", "{{dataset}}"),
                Query("sum by (dataset) (sampler_queue_capacity_rows)", "capacity {{dataset}}"),
            ),
        ),
        PanelSpec(
            "Work ahead (admission)",
            "Predicted engine seconds until every admitted request is done; admission refuses "
            "a request (503 + Retry-After) that would push this past 80% of a deadline in hand.",
            (Query("sampler_work_ahead_seconds", "work ahead"),),
            unit="s",
        ),
        PanelSpec(
            "Rows per denoising step",
            "Active rows in the latest step, and the mean rows per step (all requests together).",
            (
                Query("sum by (dataset) (sampler_active_rows)", "latest {{dataset}}"),
                Query(
                    f"sum by (dataset) (rate(sampler_batch_rows_sum[{RATE}])) / "
                    f"sum by (dataset) (rate(sampler_batch_rows_count[{RATE}]))",
                    "mean {{dataset}}",
                ),
            ),
        ),
        PanelSpec(
            "Batch rows distribution",
            "How many rows each denoising step ran (sampler_batch_rows buckets).",
            (Query(f"sum by (le) (rate(sampler_batch_rows_bucket[{RATE}]))", "{{le}}"),),
            kind="heatmap",
        ),
        PanelSpec(
            "Rows admitted and steps per second",
            "Rows that started their reverse process, and denoising steps run, per second.",
            (
                Query(
                    f"sum by (dataset) (rate(sampler_admitted_rows_sum[{RATE}]))",
                    "admitted rows/s {{dataset}}",
                ),
                Query(
                    f"sum by (dataset) (rate(sampler_steps_total[{RATE}]))", "steps/s {{dataset}}"
                ),
            ),
        ),
    ],
    "Sample quality": [
        PanelSpec(
            "KL divergence by dataset and variant",
            "KL(data || samples) in bits of the latest POST /evaluate on a default model.",
            (Query("sampler_kl_divergence_bits", "{{dataset}} {{variant}}"),),
        ),
        PanelSpec(
            "Seconds per sample",
            "Sampling seconds per sample of the latest POST /evaluate.",
            (Query("sampler_seconds_per_sample", "{{dataset}} {{variant}}"),),
            unit="s",
        ),
        PanelSpec(
            "Coverage: precision and recall",
            "Improved precision (samples inside the data's k-NN manifold) and recall (data "
            "inside the samples'), latest POST /evaluate on a default model: uneven coverage "
            "shows as recall falling while precision holds.",
            (
                Query("sampler_precision", "precision {{dataset}} {{variant}}"),
                Query("sampler_recall", "recall {{dataset}} {{variant}}"),
            ),
            unit="percentunit",
        ),
        PanelSpec(
            "Mean log-density of the samples",
            "Under their own model, nats (exact ODE likelihood of a subset, or variant "
            "density's tracked values): guidance toward the modes raises it.",
            (Query("sampler_mean_log_p", "{{dataset}} {{variant}}"),),
        ),
        PanelSpec(
            "Exact log p_data of the samples",
            "The latest POST /evaluate's samples' mean exact log-density under the dataset's "
            "true density (nats), by model, beside the data's own, -H (series 'data').",
            (
                Query("sampler_exact_mean_log_p_data", "{{model}} {{variant}}"),
                Query("sampler_exact_data_mean_log_p", "data {{dataset}}"),
            ),
        ),
        PanelSpec(
            "Distance to the exact data, and samples off it",
            "Energy distance to exact draws of the dataset, and the fraction of samples below "
            "the data's own 0.1% quantile of exact log p_data (exact samples: 0.001), latest "
            "POST /evaluate by model. On line and boxes sampler_exact_support_fraction has the "
            "fraction on the support.",
            (
                Query("sampler_exact_energy_distance", "energy {{model}} {{variant}}"),
                Query("sampler_exact_off_data_fraction", "off data {{model}} {{variant}}"),
            ),
        ),
        PanelSpec(
            "Loaded models",
            "One per loaded checkpoint, by dataset.",
            (Query("count by (dataset) (sampler_model_info)", "{{dataset}}"),),
            kind="stat",
            width=24,
        ),
    ],
    "Sweeps": [
        PanelSpec(
            "Sweeps in hand",
            "Sweeps queued or running. With DATABASE_URL every replica counts the same shared "
            "database, so the panel takes the largest count, not the sum.",
            (Query("max(sampler_sweeps_in_hand)", "sweeps"),),
        ),
        PanelSpec(
            "Sweep cells done per second",
            "Cells finished and committed, all replicas and per replica: the replicas claim "
            "cells from the shared database, so more replicas (HPA) share a sweep out.",
            (
                Query(
                    f'sum(rate(sampler_sweep_cells_total{{outcome="done"}}[{RATE}]))',
                    "all replicas",
                ),
                Query(
                    f"sum by (instance) "
                    f'(rate(sampler_sweep_cells_total{{outcome="done"}}[{RATE}]))',
                    "{{instance}}",
                ),
            ),
        ),
        PanelSpec(
            "Sweep cells failed per second",
            "Cells that ended in an error, all replicas and per replica.",
            (
                Query(
                    f'sum(rate(sampler_sweep_cells_total{{outcome="failed"}}[{RATE}]))',
                    "all replicas",
                ),
                Query(
                    f"sum by (instance) "
                    f'(rate(sampler_sweep_cells_total{{outcome="failed"}}[{RATE}]))',
                    "{{instance}}",
                ),
            ),
        ),
        PanelSpec(
            "Sweep cells in flight",
            "Cells running now, all replicas and per replica (each holds a lease on its cells; "
            "a dead replica's are taken over once SWEEP_LEASE_S has passed).",
            (
                Query("sum(sampler_sweep_cells_in_flight)", "all replicas"),
                Query("sum by (instance) (sampler_sweep_cells_in_flight)", "{{instance}}"),
            ),
        ),
    ],
    "Likelihood": [
        PanelSpec(
            "Likelihood work ahead",
            "Predicted seconds of likelihood solves taken and not finished (/loglik and "
            "/evaluate's log-densities, one solver thread). A solve is refused with 503 when "
            "this plus its own would miss its deadline.",
            (Query("sampler_loglik_work_ahead_seconds", "{{instance}}"),),
            unit="s",
        ),
        PanelSpec(
            "Likelihood solves per second by outcome",
            "done; refused at admission (503 or 422); deadline (504: stopped at its deadline); "
            "disconnected (the client went away: stopped); failed.",
            (
                Query(
                    f"sum by (outcome) (rate(sampler_loglik_solves_total[{RATE}]))",
                    "{{outcome}}",
                ),
            ),
        ),
        PanelSpec(
            "Likelihood evaluations per second",
            "The solver's work: batched network evaluations (calls) and point evaluations "
            "(one point in one call). Each point takes its own steps, capped at "
            "LOGLIK_MAX_EVALUATIONS.",
            (
                Query(
                    f"sum by (kind) (rate(sampler_loglik_evaluations_total[{RATE}]))",
                    "{{kind}}",
                ),
            ),
        ),
        PanelSpec(
            "Likelihood solve time p50 / p99",
            "Seconds of each finished solve on the solver's thread.",
            tuple(
                Query(
                    f"histogram_quantile({q}, "
                    f"sum by (le) (rate(sampler_loglik_solve_seconds_bucket[{RATE}])))",
                    f"p{round(float(q) * 100)}",
                )
                for q in ("0.5", "0.99")
            ),
            unit="s",
        ),
    ],
}


def panel(spec: PanelSpec, panel_id: int):
    builder = {"timeseries": timeseries.Panel, "heatmap": heatmap.Panel, "stat": stat.Panel}[
        spec.kind
    ]()
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .height(8)
        .span(spec.width)
    )
    for i, q in enumerate(spec.queries):
        target = (
            prometheus.Dataquery()
            .expr(q.expr)
            .legend_format(q.legend)
            .ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE)
        )
        if spec.kind == "heatmap":
            target = target.format("heatmap")
        builder = builder.with_target(target)
    return builder


def sampler_latency():
    board = (
        db.Dashboard("Sampler latency")
        .uid("sampler-latency")
        .description(
            "density-guidance-service: latency, traffic, batching, sample quality and sweeps."
        )
        .tags(["density-guidance-service", "generated"])
        .refresh("10s")
        .time("now-30m", "now")
        .timezone("browser")
    )
    panel_id = 1
    for row_title, specs in LATENCY_ROWS.items():
        board = board.with_row(db.Row(row_title).id(panel_id))
        panel_id += 1
        for spec in specs:
            board = board.with_panel(panel(spec, panel_id))
            panel_id += 1
    return board.build()


DASHBOARDS = {"sampler-latency.json": sampler_latency}


def render(name: str) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(DASHBOARDS[name]()) + "\n"


def expressions(dashboard_json: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every target of a dashboard's JSON model."""
    return [
        (p["title"], t["expr"])
        for p in dashboard_json.get("panels", [])
        for t in p.get("targets", [])
        if "expr" in t
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if a committed file is stale")
    args = parser.parse_args()
    stale = []
    for name in DASHBOARDS:
        text, path = render(name), OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path} ({len(expressions(json.loads(text)))} queries)")
    if stale:
        print(f"stale: {stale}; run python deploy/grafana/build_dashboards.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
