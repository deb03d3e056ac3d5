"""Step-level batching over real HTTP: determinism, merging, fairness, overload, deadlines."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from experiments.serving import running_server
from tests.api.metrics_text import scrape, value
from tests.live_server import live_server
from tests.polling import wait_until


def post(client, **body):
    return client.post("/sample", json={"dataset": "moons", **body})


def queued(client) -> float:
    return value(scrape(client), "sampler_queue_rows", dataset="moons")


def running(client) -> float:
    return value(scrape(client), "sampler_active_rows", dataset="moons")


def test_samples_are_identical_alone_and_batched_with_20_others(batching_server):
    target = {"variant": "smoothed", "n": 300, "seed": 5}
    alone = post(batching_server, **target).json()["samples"]
    others = [
        {"variant": v, "n": 40 + 37 * i, "seed": 100 + i, "model": "density"}
        for i, v in enumerate(["baseline", "fixed", "adaptive", "smoothed", "minimal"] * 4)
    ]
    with ThreadPoolExecutor(21) as pool:
        futures = [pool.submit(post, batching_server, **o) for o in others[:10]]
        mine = pool.submit(post, batching_server, **target)
        futures += [pool.submit(post, batching_server, **o) for o in others[10:]]
        assert all(f.result().status_code == 200 for f in futures)
        batched = mine.result().json()["samples"]
    assert batched == alone


def test_concurrent_requests_share_steps(batching_server):
    before = scrape(batching_server)
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda s: post(batching_server, n=16, seed=s), range(12)))
    after = scrape(batching_server)
    name = "sampler_batch_rows_bucket"
    steps = value(after, "sampler_batch_rows_count") - value(before, "sampler_batch_rows_count")
    at_most_one_request = value(after, name, le="16.0") - value(before, name, le="16.0")
    assert steps > 0 and at_most_one_request < steps  # some steps ran more than 16 rows
    # 12 requests x 100 steps alone would be 1,200 steps; merged they take far fewer
    assert steps < 12 * 100 * 0.75


def test_small_request_is_not_stuck_behind_a_large_one(batching_server):
    results = {}

    def timed(name, **body):
        start = time.monotonic()
        r = post(batching_server, **body)
        results[name] = (r.status_code, time.monotonic() - start, time.monotonic())

    big = threading.Thread(target=timed, args=("big",), kwargs={"n": 4096, "seed": 1})
    big.start()
    wait_until(lambda: running(batching_server), 30, "the big request's rows run")
    timed("small", n=16, seed=2)
    big.join()
    (s_code, s_latency, s_end), (b_code, b_latency, b_end) = results["small"], results["big"]
    assert s_code == b_code == 200
    assert s_end < b_end and s_latency < 0.5 * b_latency, results


def test_deadline_gives_504_and_frees_the_rows(unadmitted_server):
    # admission off: with it on, a request that cannot meet its deadline is refused up front
    r = post(unadmitted_server, n=8192, deadline_s=0.3)
    assert r.status_code == 504 and "deadline" in r.json()["detail"]
    # its rows leave the queue gauge as the 504 is sent; 2 s to see the gauge say so
    wait_until(lambda: queued(unadmitted_server) == 0, 2, "the late request's rows freed")


def test_a_client_that_goes_away_frees_its_rows(batching_server):
    def gone() -> float:
        return value(scrape(batching_server), "sampler_requests_total", status="499")

    before = gone()
    with pytest.raises(httpx.ReadTimeout):
        batching_server.post("/sample", json={"dataset": "moons", "n": 8192}, timeout=0.5)
    # 8,192 rows at 512 per step take 1,600 steps: freed within 3 s means cancelled
    wait_until(lambda: queued(batching_server) == 0, 3, "rows of a disconnected client freed")
    wait_until(lambda: gone() == before + 1, 3, "the request counted as 499")


def test_queue_overflow_is_503_with_retry_after(small_queue_server):
    client = small_queue_server
    big = threading.Thread(target=post, args=(client,), kwargs={"n": 2000})
    big.start()
    wait_until(lambda: queued(client), 30, "the request of 2,000 rows queued")
    start = time.monotonic()
    r = post(client, n=1000)
    assert r.status_code == 503 and time.monotonic() - start < 1.0
    assert int(r.headers["retry-after"]) >= 1 and "queue" in r.json()["detail"]
    assert post(client, n=2001).status_code == 422  # above MAX_N is a 422, not a 503
    big.join(120)
    assert post(client, n=10).status_code == 200  # room again once the big one is done


def test_request_level_batching_gives_the_same_samples(api_store, batching_server):
    req = {"variant": "fixed", "n": 100, "seed": 9}
    step_level = post(batching_server, **req).json()["samples"]
    with live_server(api_store, BATCHING="request", BATCH_WINDOW_MS="20") as client:
        with ThreadPoolExecutor(4) as pool:
            rs = list(pool.map(lambda s: post(client, n=64, seed=s), range(3)))
            mine = post(client, **req)
        assert all(r.status_code == 200 for r in rs)
        assert mine.json()["samples"] == step_level


@pytest.mark.parametrize("n", [257, 513])
def test_a_guided_short_last_chunk_is_the_same_on_a_busy_server(batching_server, n):
    """A bug: row 256 of n = 257 `fixed` changed completely while 8 requests of n = 2000
    ran (the density gradient's rounding depended on the row's place in the batch)."""
    # the longest deadline: this test is about numbers under load, not admission (CI once got
    # a non-200 here on a slower processor, and the test did not say which)
    target = {"variant": "fixed", "n": n, "seed": 5, "deadline_s": 600.0}
    alone = post(batching_server, **target).json()["samples"]
    with ThreadPoolExecutor(9) as pool:
        # 8 x 600 rows: 3 chunks each, where the target has 2 (round robin gives every request
        # one chunk a turn), so they outlast it and every step of the target runs beside other
        # requests' chunks at other stages, as it did beside 8 x 2,000 (3.3x the work)
        busy = [
            pool.submit(post, batching_server, variant="fixed", n=600, seed=s, deadline_s=600.0)
            for s in range(8)
        ]
        # under way: their rows queued (not all 4,800 yet, perhaps)
        wait_until(lambda: queued(batching_server) >= 1000, 60, "the busy requests queued")
        mine = post(batching_server, **target)
        answers = [f.result() for f in busy]
    refused = [(r.status_code, r.text[:300]) for r in answers + [mine] if r.status_code != 200]
    assert not refused, refused
    assert mine.json()["samples"] == alone


def test_a_client_that_goes_away_logs_no_stray_future_error(api_store, tmp_path):
    """A bug: each disconnect logged "Future exception was never retrieved"."""
    log = tmp_path / "server.log"
    server = running_server(api_store, log=log, LOG_LEVEL="info")
    with server as base, httpx.Client(base_url=base) as client:
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):
                client.post("/sample", json={"dataset": "moons", "n": 8192}, timeout=0.3)
        wait_until(lambda: queued(client) == 0, 10, "rows of the 3 clients freed")
        assert value(scrape(client), "sampler_requests_total", status="499") >= 3
    text = log.read_text()
    assert "never retrieved" not in text and "Traceback" not in text, text[-3000:]
