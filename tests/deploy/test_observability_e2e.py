"""End to end with the real pieces: the service, a real Prometheus with the project's own
scrape and rule files (targets rewritten to loopback), traffic, then EVERY PromQL expression
of the dashboards through Prometheus's HTTP API. A panel whose query returns nothing fails."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import yaml

from tests.deploy.conftest import DEPLOY
from tests.deploy.test_grafana import build
from tests.live_server import free_port

SCRAPE_S = 1
# Stands in for Grafana's $__rate_interval. It must span the whole run of traffic: a round
# holds /evaluate's log-density ODE, and on a slow CI machine the last /sample answers were
# once more than 30 s old when the panels were queried, so their rates read 0 and every
# latency quantile NaN.
RATE_WINDOW = "5m"


@contextlib.contextmanager
def prometheus(binary: str, target: str, tmp_path):
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"}
    config["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "prometheus not ready in 30 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def traffic(sampler: httpx.Client, log_p_samples: int) -> None:
    requests = [
        # n = 300 as batch: both priority classes' panels get data
        ("/sample", {"dataset": "moons", "variant": v, "n": n, "priority": priority})
        for v in ("baseline", "fixed", "adaptive", "smoothed", "minimal")
        for n, priority in ((16, "interactive"), (300, "batch"))
    ]
    requests += [
        # n = 300 sets every KL, coverage and exact gauge as 1,000 did: the panels are
        # checked for data, not for its value. The samples' log-density (a likelihood solve of
        # several seconds on one thread, whatever the count) only where asked: one variant's
        # sets the mean-log-p gauge, and its solve the likelihood panels
        ("/evaluate", {"dataset": "moons", "variant": v, "n": 300, "log_p_samples": k})
        for v, k in (("baseline", log_p_samples), ("smoothed", 0))
    ]
    requests += [("/sample", {"dataset": "moons", "n": 0})]  # a 422 for the error panels
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda r: sampler.post(r[0], json=r[1]), requests))


def query(prom: httpx.Client, expr: str) -> list[dict]:
    r = prom.get("/api/v1/query", params={"query": expr})
    assert r.status_code == 200, r.text
    return r.json()["data"]["result"]


def has_finite_value(result: list[dict]) -> bool:
    values = [float(s["value"][1]) for s in result if "value" in s]
    return any(math.isfinite(v) for v in values)


def test_every_dashboard_query_returns_data(batching_server, prometheus_bin, tmp_path):
    sampler = batching_server  # the session's server of 512 rows a step (tests/servers.py)
    target = str(sampler.base_url).removeprefix("http://").rstrip("/")
    with prometheus(prometheus_bin, target, tmp_path) as prom:
        for k in (5, 0):  # spread over several scrapes, so rates have two points
            traffic(sampler, log_p_samples=k)
            time.sleep(2 * SCRAPE_S)
        deadline = time.monotonic() + 20
        while not query(prom, 'up{job="sampler"} == 1'):
            assert time.monotonic() < deadline, "the sampler target never came up"
            time.sleep(0.5)
        time.sleep(2 * SCRAPE_S)

        empty = []
        for name in build.DASHBOARDS:
            board = json.loads((DEPLOY / "grafana" / "dashboards" / name).read_text())
            for title, expr in build.expressions(board):
                result = query(prom, expr.replace("$__rate_interval", RATE_WINDOW))
                if not has_finite_value(result):
                    empty.append(f"{name} / {title}: {expr}")
        assert not empty, "panels with no data:\n" + "\n".join(empty)
        assert not has_finite_value(query(prom, "sampler_no_such_metric"))  # can fail

        groups = prom.get("/api/v1/rules").json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == 9 and all(r["health"] == "ok" for r in rules), rules
        thresholds = query(prom, "dataset:sampler_kl_threshold_bits:constant")
        assert len(thresholds) == 4
