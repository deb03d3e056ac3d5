"""Every Prometheus metric of the service, with fixed names that dashboards and alerts rely on.

Label values come only from closed sets: datasets, variants, samplers, priority classes,
endpoints, HTTP status codes.
The batcher and the routes report through these methods; hooks never raise into requests.
"""

from __future__ import annotations

import math
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.core.data import DATASETS
from service.core.guiders import GUIDERS
from service.core.samplers import SAMPLERS
from service.serving.priority import PRIORITY_CLASSES

# Milliseconds to tens of seconds.
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    60.0,
    120.0,
)
ROW_BUCKETS = (1, 16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
ENDPOINTS = (
    "sample",
    "sample_stream",
    "ui",
    "evaluate",
    "loglik",
    "variants",
    "datasets",
    "samplers",
    "models",
    "healthz",
    "readyz",
    "metrics",
    "reload",
)
LOGLIK_OUTCOMES = ("done", "refused", "deadline", "disconnected", "failed")
NONE = "none"  # the label for a request that never named a valid dataset or variant


def label_dataset(value: object) -> str:
    return value if isinstance(value, str) and value in DATASETS else NONE


def label_variant(value: object) -> str:
    return value if isinstance(value, str) and value in GUIDERS else NONE


def label_sampler(value: object) -> str:
    return value if isinstance(value, str) and value in SAMPLERS else NONE


def label_priority(value: object) -> str:
    return value if isinstance(value, str) and value in PRIORITY_CLASSES else NONE


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.request_duration = Histogram(
            "sampler_request_duration_seconds",
            "Request latency, end to end in the server; priority: the request's class "
            "(none for requests that never reached a batcher).",
            ["endpoint", "dataset", "variant", "sampler", "priority", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "sampler_queue_wait_seconds",
            "Time from submission to the request's first step.",
            ["dataset", "priority"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "sampler_compute_seconds",
            "Time from a request's first step to its last.",
            ["dataset", "variant", "sampler"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "sampler_batch_rows",
            "Rows run in one denoising step (all requests together).",
            ["dataset"],
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.admitted_rows = Histogram(
            "sampler_admitted_rows",
            "Rows that started their reverse process in one step.",
            ["dataset"],
            buckets=(0, *ROW_BUCKETS),
            registry=r,
        )
        self.queue_rows = Gauge(
            "sampler_queue_rows", "Rows accepted and not yet finished.", ["dataset"], registry=r
        )
        self.work_ahead = Gauge(
            "sampler_work_ahead_seconds",
            "Predicted engine seconds until all admitted requests are done (admission's view).",
            registry=r,
        )
        self.queue_capacity = Gauge(
            "sampler_queue_capacity_rows",
            "Rows the queues of a dataset's models can hold.",
            ["dataset"],
            registry=r,
        )
        self.active_rows = Gauge(
            "sampler_active_rows", "Rows run in the latest step.", ["dataset"], registry=r
        )
        self.steps = Counter(
            "sampler_steps_total", "Denoising steps run by the batchers.", ["dataset"], registry=r
        )
        self.row_steps = Counter(
            "sampler_row_steps_total",
            "Rows run, summed over steps (one row of one network evaluation), by priority class.",
            ["dataset", "priority"],
            registry=r,
        )
        self.requests = Counter(
            "sampler_requests_total", "Requests answered.", ["endpoint", "status"], registry=r
        )
        self.samples = Counter(
            "sampler_samples_total",
            "Samples returned.",
            ["dataset", "variant", "sampler"],
            registry=r,
        )
        self.nonfinite = Counter(
            "sampler_nonfinite_samples_total",
            "Returned samples with a non-finite coordinate.",
            ["dataset", "variant", "sampler"],
            registry=r,
        )
        self.kl = Gauge(
            "sampler_kl_divergence_bits",
            "KL(data || samples) of the latest /evaluate, bits.",
            ["dataset", "variant", "sampler"],
            registry=r,
        )
        self.seconds_per_sample = Gauge(
            "sampler_seconds_per_sample",
            "Sampling seconds per sample of the latest /evaluate.",
            ["dataset", "variant", "sampler"],
            registry=r,
        )
        self.precision = Gauge(
            "sampler_precision",
            "Improved precision (k-NN manifolds, Kynkaanniemi et al. 2019) of the latest "
            "/evaluate: the fraction of samples inside the data's manifold.",
            ["dataset", "variant", "sampler"],
            registry=r,
        )
        self.recall = Gauge(
            "sampler_recall",
            "Improved recall of the latest /evaluate: the fraction of data inside the samples' "
            "manifold (coverage).",
            ["dataset", "variant", "sampler"],
            registry=r,
        )
        self.exact_log_p = Gauge(
            "sampler_exact_mean_log_p_data",
            "The latest /evaluate's samples' mean exact log p_data (nats) by model; the data's "
            "own is sampler_exact_data_mean_log_p.",
            ["dataset", "model", "variant", "sampler"],
            registry=r,
        )
        self.exact_data_log_p = Gauge(
            "sampler_exact_data_mean_log_p",
            "-H(p_data), nats: the data's own mean exact log-density.",
            ["dataset"],
            registry=r,
        )
        self.energy_distance = Gauge(
            "sampler_exact_energy_distance",
            "The latest /evaluate's energy distance D^2 to exact draws of the data, by model.",
            ["dataset", "model", "variant", "sampler"],
            registry=r,
        )
        self.off_data_fraction = Gauge(
            "sampler_exact_off_data_fraction",
            "The latest /evaluate's fraction of samples below the data's own 0.1% quantile of "
            "exact log p_data (exact samples: 0.001), by model.",
            ["dataset", "model", "variant", "sampler"],
            registry=r,
        )
        self.support_fraction = Gauge(
            "sampler_exact_support_fraction",
            "line and boxes: the latest /evaluate's fraction of samples on the support.",
            ["dataset", "model", "variant", "sampler"],
            registry=r,
        )
        self.mean_log_p = Gauge(
            "sampler_mean_log_p",
            "Mean log-density of the samples under their model (nats) in the latest /evaluate: "
            "the exact ODE likelihood of a subset, or variant density's tracked values.",
            ["dataset", "variant", "sampler"],
            registry=r,
        )
        self.nll = Gauge(
            "sampler_nll_bits_per_dim",
            "Held-out negative log-likelihood of the default plain model (probability-flow "
            "ODE), bits per dimension, from the latest /evaluate or /loglik of held-out data.",
            ["dataset"],
            registry=r,
        )
        self.model_info = Gauge(
            "sampler_model_info",
            "1 for each loaded model; id: its identity (weights and configs, see /models).",
            ["dataset", "name", "id", "device"],
            registry=r,
        )
        self.sweeps_in_hand = Gauge(
            "sampler_sweeps_in_hand",
            "Sweeps running (every replica's: the count is read from the shared database).",
            registry=r,
        )
        self.sweep_cells = Counter(
            "sampler_sweep_cells_total",
            "Sweep cells this replica finished and committed, by outcome (done, failed).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("done", "failed"):  # both series exist from the start: rate() has data
            self.sweep_cells.labels(outcome)
        self.sweep_cells_in_flight = Gauge(
            "sampler_sweep_cells_in_flight", "Sweep cells this replica is running.", registry=r
        )
        self.loglik_work_ahead = Gauge(
            "sampler_loglik_work_ahead_seconds",
            "Predicted seconds of likelihood solves taken and not finished (admission's view).",
            registry=r,
        )
        self.loglik_solves = Counter(
            "sampler_loglik_solves_total",
            "Likelihood solves (/loglik, and /evaluate's log-densities) by outcome: done, "
            "refused (503 or 422 at admission), deadline (504), disconnected, failed.",
            ["outcome"],
            registry=r,
        )
        for outcome in LOGLIK_OUTCOMES:
            self.loglik_solves.labels(outcome)
        self.loglik_evaluations = Counter(
            "sampler_loglik_evaluations_total",
            "The likelihood solver's work: batched network evaluations (calls), and point "
            "evaluations (one point in one call), finished and stopped solves alike.",
            ["kind"],
            registry=r,
        )
        for kind in ("calls", "points"):
            self.loglik_evaluations.labels(kind)
        self.loglik_seconds = Histogram(
            "sampler_loglik_solve_seconds",
            "Seconds of each finished likelihood solve on the solver's thread.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._load_lock = threading.Lock()
        self._load: dict[tuple[str, int], tuple[int, int]] = {}

    # -- hooks for the batcher ------------------------------------------------------------

    def on_step(
        self, dataset: str, rows: int, admitted: int, seconds: float, interactive_rows: int
    ) -> None:
        self.batch_rows.labels(dataset).observe(rows)
        self.admitted_rows.labels(dataset).observe(admitted)
        self.steps.labels(dataset).inc()
        self.row_steps.labels(dataset, "interactive").inc(interactive_rows)
        self.row_steps.labels(dataset, "batch").inc(rows - interactive_rows)

    def on_load(self, dataset: str, key: int, queued_rows: int, active_rows: int) -> None:
        """Per-batcher values, summed per dataset (a dataset has a plain and a density model)."""
        with self._load_lock:
            self._load[(dataset, key)] = (queued_rows, active_rows)
            queued = sum(q for (d, _), (q, _) in self._load.items() if d == dataset)
            active = sum(a for (d, _), (_, a) in self._load.items() if d == dataset)
        self.queue_rows.labels(dataset).set(queued)
        self.active_rows.labels(dataset).set(active)

    # -- hooks for the routes -------------------------------------------------------------

    def on_request(
        self,
        endpoint: str,
        dataset: str,
        variant: str,
        sampler: str,
        priority: str,
        status: int,
        seconds: float,
    ) -> None:
        self.request_duration.labels(
            endpoint, dataset, variant, sampler, priority, str(status)
        ).observe(seconds)
        self.requests.labels(endpoint, str(status)).inc()

    def on_sampled(
        self,
        dataset: str,
        variant: str,
        sampler: str,
        n: int,
        nonfinite: int,
        queue_s: float,
        compute_s: float,
        priority: str,
    ) -> None:
        self.samples.labels(dataset, variant, sampler).inc(n)
        self.nonfinite.labels(dataset, variant, sampler).inc(nonfinite)
        self.queue_wait.labels(dataset, priority).observe(queue_s)
        self.compute.labels(dataset, variant, sampler).observe(compute_s)

    def on_loglik_solve(self, outcome: str) -> None:
        self.loglik_solves.labels(outcome if outcome in LOGLIK_OUTCOMES else "failed").inc()

    def on_loglik_work(self, calls: int, point_evaluations: int, seconds: float) -> None:
        self.loglik_evaluations.labels("calls").inc(calls)
        self.loglik_evaluations.labels("points").inc(point_evaluations)
        if seconds > 0:
            self.loglik_seconds.observe(seconds)

    def on_sweep_cell(self, outcome: str) -> None:
        self.sweep_cells.labels(outcome).inc()

    def on_evaluated(
        self, dataset: str, variant: str, sampler: str, kl_bits: float, per_sample: float
    ) -> None:
        self.kl.labels(dataset, variant, sampler).set(kl_bits)
        self.seconds_per_sample.labels(dataset, variant, sampler).set(per_sample)

    def on_coverage(
        self, dataset: str, variant: str, sampler: str, precision: float, recall: float
    ) -> None:
        if not (math.isnan(precision) or math.isnan(recall)):
            self.precision.labels(dataset, variant, sampler).set(precision)
            self.recall.labels(dataset, variant, sampler).set(recall)

    def on_log_p(self, dataset: str, variant: str, sampler: str, mean_log_p: float) -> None:
        if math.isfinite(mean_log_p):
            self.mean_log_p.labels(dataset, variant, sampler).set(mean_log_p)

    def on_exact(self, dataset: str, model: str, variant: str, sampler: str, exact) -> None:
        labels = (dataset, model, variant, sampler)
        self.exact_data_log_p.labels(dataset).set(exact.data_mean_log_p)
        if exact.mean_log_p_data is not None:
            self.exact_log_p.labels(*labels).set(exact.mean_log_p_data)
        if exact.energy_distance is not None:
            self.energy_distance.labels(*labels).set(exact.energy_distance)
        if exact.off_data_fraction is not None:
            self.off_data_fraction.labels(*labels).set(exact.off_data_fraction)
        if exact.support_fraction is not None:
            self.support_fraction.labels(*labels).set(exact.support_fraction)

    def on_nll(self, dataset: str, bits_per_dim: float) -> None:
        self.nll.labels(dataset).set(bits_per_dim)

    def set_models(self, models: list[tuple[str, str, str, str]], queue_capacity: int) -> None:
        """(dataset, name, id, device) of every loaded model; replaces the previous set."""
        self.model_info.clear()
        self.queue_capacity.clear()
        for dataset, name, model_id, device in models:
            self.model_info.labels(dataset, name, model_id, device).set(1)
            self.queue_capacity.labels(dataset).inc(queue_capacity)
