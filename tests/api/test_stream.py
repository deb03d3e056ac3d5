"""POST /sample/stream against the real server, through the project's own client."""

from __future__ import annotations

import contextlib
import threading

import httpx
import numpy as np
import pytest

from service.client import Client, Preview, Progress, Queued, Samples, ServiceError, parse_sse
from tests.api.metrics_text import scrape, value
from tests.polling import wait_until


@pytest.fixture
def stream_server(batching_server):
    """The session's server of 512 rows a step and previews of at most 100 rows."""
    return batching_server


def queued(http) -> float:
    return value(scrape(http), "sampler_queue_rows", dataset="moons")


@pytest.fixture
def client(stream_server):
    return Client(http=stream_server)


@pytest.mark.parametrize(
    "body",
    [
        {"n": 700, "seed": 3},  # three chunks, ddpm
        {"n": 300, "seed": 4, "variant": "smoothed"},  # the density head's lane
        {"n": 200, "seed": 5, "sampler": "heun", "steps": 10},  # two evaluations per step
    ],
)
def test_stream_ends_with_the_samples_sample_gives(client, body):
    events = list(client.stream("moons", every=3, preview_rows=50, **body))
    queued, *middle, result = events
    assert isinstance(queued, Queued) and queued.n == body["n"]
    assert isinstance(result, Samples)
    direct = client.sample("moons", **body)
    np.testing.assert_array_equal(result.samples, direct.samples)
    assert result.meta.seed == direct.meta.seed and result.meta.variant == direct.meta.variant

    progress = [e for e in middle if isinstance(e, Progress)]
    previews = [e for e in middle if isinstance(e, Preview)]
    done = [p.evaluation for p in progress]
    assert done == sorted(done) and len(set(done)) == len(done), done
    assert all(p.evaluations == queued.evaluations for p in progress)
    # about one event per `every` evaluations (rows of a big request move in turns)
    assert len(progress) >= queued.evaluations // 3 // 2, (len(progress), queued.evaluations)
    assert previews and all(p.x_t.shape == (50, 2) == p.x0.shape for p in previews)
    # the preview rows are the request's first rows: the last x_t approaches the final samples
    # and the predicted x0 is already close to it long before the end
    last = previews[-1]
    assert np.abs(last.x_t - result.samples[:50]).max() < 1.0
    ts = [p.t for p in previews]
    assert ts == sorted(ts, reverse=True), ts


def test_default_every_gives_about_25_events(client):
    events = list(client.stream("moons", n=64, seed=1))
    progress = [e for e in events if isinstance(e, Progress)]
    assert 15 <= len(progress) <= 30, len(progress)
    assert isinstance(events[-1], Samples)


def test_stream_validates_like_sample(stream_server):
    for bad, field in [
        ({"n": 0}, "n"),
        ({"scale": 99.0}, "scale"),
        ({"preview_rows": 101}, "preview_rows"),  # MAX_PREVIEW_ROWS=100 here
        ({"every": 0}, "every"),
        ({"sampler": "nope"}, "sampler"),
    ]:
        r = stream_server.post("/sample/stream", json={"dataset": "moons", **bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/json")
        (entry, *_) = r.json()["detail"]
        assert entry["loc"][-1] == field and entry.get("allowed"), entry
    with pytest.raises(ServiceError) as e:
        list(Client(http=stream_server).stream("moons", preview_rows=101))
    assert e.value.status == 422 and "preview_rows" in str(e.value) and "100" in str(e.value)


def test_a_client_that_leaves_mid_stream_frees_its_rows(client, stream_server):
    events = client.stream("moons", n=8192, every=1, preview_rows=0)
    for e in events:
        if isinstance(e, Progress):
            break
    assert queued(stream_server) > 0
    events.close()  # closes the HTTP stream
    # 8,192 rows at 512 per step take 1,600 steps: freed within 3 s means cancelled
    wait_until(lambda: queued(stream_server) == 0, 3, "rows of a client that left freed")


def test_deadline_mid_stream_is_an_error_event(unadmitted_server):
    # admission off: with it on, a request that cannot meet its deadline is refused up front
    http = unadmitted_server
    with http.stream(
        "POST", "/sample/stream", json={"dataset": "moons", "n": 8192, "deadline_s": 0.5}
    ) as r:
        assert r.status_code == 200
        events = list(parse_sse(r.iter_lines()))
    name, data = events[-1]
    assert name == "error" and data["status"] == 504 and "deadline" in data["detail"]
    assert events[0][0] == "queued"
    with pytest.raises(ServiceError) as e:
        list(Client(http=http).stream("moons", n=8192, deadline_s=0.5))
    assert e.value.status == 504


@contextlib.contextmanager
def busy(http):
    """The small-queue server holding a request of 2,000 of its 2,500 rows: one of 1,000 gets
    503 until that one is done."""
    big = threading.Thread(
        target=http.post, args=("/sample",), kwargs={"json": {"dataset": "moons", "n": 2000}}
    )
    big.start()
    try:
        wait_until(lambda: queued(http), 30, "the request of 2,000 rows queued")
        yield big
    finally:
        big.join(120)


def test_overload_is_503_with_retry_after_before_the_stream(small_queue_server):
    http = small_queue_server
    with busy(http):
        r = http.post("/sample/stream", json={"dataset": "moons", "n": 1000})
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
    assert r.headers["content-type"].startswith("application/json")


def test_client_retries_503_within_its_budget(small_queue_server):
    http = small_queue_server
    with busy(http):
        # no budget: the 503 comes straight back, with the server's Retry-After
        with pytest.raises(ServiceError) as e:
            Client(http=http, retries=0).sample("moons", n=1000)
        assert e.value.status == 503 and e.value.retry_after >= 1
        # a budget: it waits out the Retry-After and the request goes through
        got = Client(http=http, retries=5, retry_budget_s=60).sample("moons", n=1000, seed=0)
    assert got.samples.shape == (1000, 2)


def test_client_npy_and_json_transport_agree(client):
    a = client.sample("moons", n=300, seed=9, npy=True)
    b = client.sample("moons", n=300, seed=9, npy=False)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.meta == b.meta.__class__(**{**b.meta.__dict__, "timing": a.meta.timing})


def test_client_timeout_becomes_the_deadline(stream_server):
    seen = {}

    def spy(request: httpx.Request) -> None:
        seen["body"] = request.content

    stream_server.event_hooks["request"].append(spy)
    try:
        Client(http=stream_server, timeout=42.0).sample("moons", n=16, seed=0)
    finally:
        stream_server.event_hooks["request"].remove(spy)
    assert b'"deadline_s":42.0' in seen["body"].replace(b" ", b"")


def test_async_client_stream_and_sample(stream_server):
    import asyncio

    from service.client import AsyncClient

    async def run():
        async with AsyncClient(str(stream_server.base_url)) as c:
            events = [e async for e in c.stream("moons", n=100, seed=2, every=10)]
            direct = await c.sample("moons", n=100, seed=2)
            return events, direct

    events, direct = asyncio.run(run())
    assert isinstance(events[0], Queued) and isinstance(events[-1], Samples)
    np.testing.assert_array_equal(events[-1].samples, direct.samples)
