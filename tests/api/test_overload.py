"""Overload over real HTTP: under a storm, what is admitted succeeds.

Before whole-server admission, 300 concurrent n = 100,000 requests had their 4 admitted ones
all end in 504 at 92% done: fair sharing slowed each admitted request by the next.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from tests.api.metrics_text import scrape, value
from tests.live_server import live_server

# The storm server's steps are charged at this cost model (FIXED_STEP_COST: seconds a row, a
# guided row, a step), not at their measured time, so what admission takes and refuses no
# longer depends on the machine's speed or load. A row costs the 2-core VM about 2-4e-6 s, so
# a request of 4,000 rows (8.1 s of work here) really runs in 1-2 s: of the 16 s that a 20 s
# deadline admits, the cost model fills all, while the requests it admits finish with room.
STORM_COST = (2e-5, 6e-5, 1e-3)


def test_under_a_storm_admitted_requests_finish_and_the_rest_are_told_when_to_retry(api_store):
    env = {"DEFAULT_DEADLINE_S": "20", "FIXED_STEP_COST": json.dumps(STORM_COST)}
    with live_server(api_store, **env) as client:
        bodies = [
            {"dataset": "moons", "n": 4000, "seed": i, "model": ("plain", "density")[i % 2]}
            for i in range(48)
        ]
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: client.post("/sample", json=b), bodies))
        codes = [r.status_code for r in answers]
        refused = [r for r in answers if r.status_code == 503]
        admitted = [r for r in answers if r.status_code != 503]
        assert set(codes) <= {200, 503, 504}, codes
        # at most 16 s of 8.1 s requests in hand at once: two, plus what drained meanwhile
        assert admitted and len(refused) >= 40, codes
        ok = sum(r.status_code == 200 for r in admitted)
        assert ok >= 0.95 * len(admitted), codes
        for r in refused:
            assert 1 <= int(r.headers["retry-after"]) <= 600
            assert "work ahead" in r.json()["detail"]
        assert value(scrape(client), "sampler_work_ahead_seconds") == 0


def test_a_request_that_cannot_meet_its_deadline_alone_is_refused_naming_the_field(server):
    r = server.post("/sample", json={"dataset": "moons", "n": 100_000, "deadline_s": 0.01})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "deadline_s"] and "deadline_s >=" in detail["allowed"]
