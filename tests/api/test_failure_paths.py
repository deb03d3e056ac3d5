"""Failure paths over real HTTP: /readyz while the models load, shutdown with requests in flight,
BATCHING=off, and /loglik when its solver is busy."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from service.client import Client, Samples
from tests.api.metrics_text import scrape, value
from tests.live_server import live_server, server_process
from tests.polling import wait_until


@pytest.fixture(scope="module")
def off_server(api_store):
    """One request at a time; 10 held-out points behind /evaluate's nll_bits."""
    with live_server(api_store, BATCHING="off", HELDOUT_NLL_POINTS="10") as client:
        yield client


def test_readyz_is_503_while_the_models_load_and_200_once_they_have(api_store, tmp_path):
    """A manifest that is a FIFO holds the loading where the test wants it: the server answers
    while its models load, /readyz says 503 and /sample refuses, until the test writes it."""
    store = tmp_path / "store"
    shutil.copytree(api_store, store)
    manifest = store / "moons-plain" / "manifest.json"
    text = manifest.read_text()
    manifest.unlink()
    os.mkfifo(manifest)
    writer = threading.Thread(target=manifest.write_text, args=(text,), daemon=True)
    with server_process(store, tmp_path / "server.log") as (_, client):
        r = client.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["ready"] is False and r.json()["models"] == []
        r = client.post("/sample", json={"dataset": "moons", "n": 4})
        assert r.status_code == 503 and "loading" in r.json()["detail"]
        assert r.headers["retry-after"] == "2"
        assert client.get("/healthz").status_code == 200
        writer.start()  # the loading reads the manifest and goes on
        wait_until(lambda: client.get("/readyz").status_code == 200, 60, "/readyz says 200")
        assert client.get("/readyz").json()["models"] == ["moons-density", "moons-plain"]
        assert client.post("/sample", json={"dataset": "moons", "n": 4}).status_code == 200
    writer.join(5)


def test_shutdown_answers_the_requests_in_flight(api_store, tmp_path):
    """SIGINT with a /sample and a stream under way: both get their whole answer, new
    connections are refused, and the process exits cleanly."""
    log = tmp_path / "server.log"
    # 2 x 2,048 rows at 256 a step: seconds of work, well inside the 30 s uvicorn gives open
    # requests at shutdown (service/api/app.py), even on a busy VM
    body = {"dataset": "moons", "n": 2048, "seed": 1, "deadline_s": 600}
    with server_process(api_store, log, MAX_ROWS_PER_STEP="256") as (proc, client):
        wait_until(lambda: client.get("/readyz").status_code == 200, 90, "/readyz says 200")
        with ThreadPoolExecutor(2) as pool:
            sampled = pool.submit(client.post, "/sample", json=body)
            events = pool.submit(lambda: list(Client(http=client).stream(**body, every=50)))
            wait_until(
                lambda: value(scrape(client), "sampler_queue_rows", dataset="moons") >= 2 * 2048,
                60,
                "both requests queued",
            )
            proc.send_signal(signal.SIGINT)
            r, streamed = sampled.result(120), events.result(120)
        assert r.status_code == 200, r.text
        samples = np.array(r.json()["samples"], dtype=np.float32)
        assert isinstance(streamed[-1], Samples) and samples.shape == (2048, 2)
        np.testing.assert_array_equal(streamed[-1].samples, samples)  # one body, one answer
        assert proc.wait(60) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(str(client.base_url.join("/healthz")), timeout=5)
    text = log.read_text()
    assert "Traceback" not in text and "Cancel" not in text, text[-3000:]


def test_batching_off_runs_one_request_at_a_time_with_the_same_samples(off_server, server):
    req = {"dataset": "moons", "variant": "fixed", "n": 100, "seed": 9}
    step_level = server.post("/sample", json=req).json()["samples"]
    before = scrape(off_server)
    with ThreadPoolExecutor(4) as pool:
        body = {"dataset": "moons", "n": 16}
        rs = list(
            pool.map(lambda s: off_server.post("/sample", json={**body, "seed": s}), range(4))
        )
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    after = scrape(off_server)

    def steps(metric, **labels):
        return value(after, metric, **labels) - value(before, metric, **labels)

    # one request at a time: 4 x 100 steps of 16 rows, where step-level batching merges them
    # (test_batching.py::test_concurrent_requests_share_steps)
    assert steps("sampler_batch_rows_count") == 4 * 100
    assert steps("sampler_batch_rows_bucket", le="16.0") == 4 * 100
    assert off_server.post("/sample", json=req).json()["samples"] == step_level


# Points far from the data keep the solver busy until their deadline stops them. Admission
# predicts a solve of two typical points (~3 s), so SLOW is taken and holds the solver for
# its 8 s, and a second one, whose 4 s deadline cannot fit behind it, is refused at once.
SLOW = {"dataset": "moons", "points": [[50.0, -50.0], [-60.0, 70.0]], "deadline_s": 8.0}


def test_loglik_is_503_when_the_work_ahead_misses_its_deadline_and_evaluate_waits_its_turn(
    off_server,
):
    """A /loglik solve in hand: a second that could not finish inside its deadline behind it
    is refused at once, with a Retry-After from the work ahead; an /evaluate, whose samples
    are drawn by then, waits for the solver instead; the solves' outcomes are counted."""
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(off_server.post, "/loglik", json=SLOW)
        wait_until(
            lambda: value(scrape(off_server), "sampler_loglik_work_ahead_seconds") > 0,
            30,
            "the slow solve was taken",
            every=0.05,
        )
        busy = off_server.post("/loglik", json={**SLOW, "deadline_s": 4.0})
        assert busy.status_code == 503, busy.text
        assert "work ahead" in busy.json()["detail"]
        assert 1 <= int(busy.headers["retry-after"]) <= 20
        # a model whose held-out likelihood this server has not computed yet
        body = {"dataset": "moons", "model": "density", "n": 50, "log_p_samples": 0}
        ev = off_server.post("/evaluate", json=body)
        assert ev.status_code == 200, ev.text
        assert ev.json()["nll_bits"] is not None
        assert slow.result(60).status_code == 504
    metrics = scrape(off_server)
    for outcome in ("refused", "deadline", "done"):
        assert value(metrics, "sampler_loglik_solves_total", outcome=outcome) >= 1, outcome
    assert value(metrics, "sampler_loglik_evaluations_total", kind="points") > 0
