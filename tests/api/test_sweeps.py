"""Sweeps over HTTP on the shared server: a grid's table with intervals, the same numbers as
/evaluate, progress as Server-Sent Events, cancellation, and every kind of bad grid."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.polling import wait_until

GRID = {"dataset": "moons", "variant": ["baseline", "smoothed"], "n": 300, "steps": 10}


def _finished(server, sweep_id: str, timeout: float = 60) -> dict:
    def done():
        status = server.get(f"/sweeps/{sweep_id}", params={"rows": "false"}).json()
        return status if status["state"] != "running" else None

    return wait_until(done, timeout, f"sweep {sweep_id} finishes", every=0.2)


def _events(server, sweep_id: str) -> list[tuple[str, dict]]:
    out = []
    with server.stream("GET", f"/sweeps/{sweep_id}/events", timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
    return out


def test_a_sweep_runs_every_cell_and_reports_means_with_intervals(server):
    body = {"grid": GRID, "seeds": 3, "metrics": ["kl_bits", "recall"], "name": "two variants"}
    r = server.post("/sweeps", json=body)
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["cells"] == 6 and created["configs"] == 2 and created["predicted_s"] > 0
    events = _events(server, created["id"])
    kinds = [e for e, _ in events]
    assert kinds[-1] == "end" and set(kinds[:-1]) <= {"progress"}
    assert events[-1][1]["state"] == "done" and events[-1][1]["done"] == 6
    done = [d["done"] for e, d in events if e == "progress"]
    assert done == sorted(done)  # progress only goes forward

    status = server.get(f"/sweeps/{created['id']}").json()
    assert status["name"] == "two variants" and len(status["rows"]) == 6
    results = server.get(f"/sweeps/{created['id']}/results").json()
    rows, summary = results["rows"], results["summary"]
    assert [r["cell"] for r in rows] == list(range(6))
    assert [(r["variant"], r["seed"]) for r in rows[:4]] == [
        ("baseline", 0),
        ("baseline", 1),
        ("baseline", 2),
        ("smoothed", 0),
    ]
    assert all(r["state"] == "done" and r["kl_bits"] is not None for r in rows)
    assert rows[0]["request"]["log_p_samples"] == 0 and rows[0]["request"]["k"] == 5
    for entry in summary:
        kls = [r["kl_bits"] for r in rows if r["config"] == entry["config"]]
        assert entry["kl_bits"] == pytest.approx(sum(kls) / 3)
        assert entry["kl_bits_low"] < entry["kl_bits"] < entry["kl_bits_high"]
        assert entry["seeds_done"] == 3

    # each row's request is an /evaluate request giving the same numbers
    again = server.post("/evaluate", json=rows[4]["request"]).json()
    assert again["kl_bits"] == rows[4]["kl_bits"] and again["recall"] == rows[4]["recall"]

    table = list(
        csv.DictReader(
            io.StringIO(
                server.get(
                    f"/sweeps/{created['id']}/results", params={"format": "csv", "table": "summary"}
                ).text
            )
        )
    )
    assert len(table) == 2 and float(table[1]["kl_bits"]) == pytest.approx(summary[1]["kl_bits"])
    alone = server.get(f"/sweeps/{created['id']}/results", params={"table": "summary"}).json()
    assert alone["summary"] == summary and "rows" not in alone
    listed = server.get("/sweeps").json()
    assert listed[0]["id"] == created["id"] and listed[0]["done"] == 6


def test_the_same_grid_and_seeds_give_the_same_numbers(server):
    body = {"grid": {**GRID, "variant": "baseline"}, "seeds": [11, 12]}
    ids = [server.post("/sweeps", json=body).json()["id"] for _ in range(2)]
    tables = []
    for sweep_id in ids:
        _finished(server, sweep_id)
        rows = server.get(f"/sweeps/{sweep_id}/results").json()["rows"]
        tables.append([(r["seed"], r["kl_bits"], r["precision"]) for r in rows])
    assert tables[0] == tables[1] and tables[0][0][1] != tables[0][1][1]


def test_cancel_stops_a_sweep_and_keeps_what_finished(server):
    grid = {**GRID, "variant": "baseline", "n": 2000, "steps": 100}
    sweep_id = server.post("/sweeps", json={"grid": grid, "seeds": 40}).json()["id"]
    r = server.delete(f"/sweeps/{sweep_id}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    after = server.get(f"/sweeps/{sweep_id}").json()
    assert after["pending"] == after["running"] == 0 and after["done"] < 40
    assert after["done"] == len(after["rows"])
    assert server.get(f"/sweeps/{sweep_id}/events").text.startswith("event: end")
    # its rows left the batcher: the server is idle again at once
    wait_until(
        lambda: "sampler_sweep_cells_in_flight 0.0" in server.get("/metrics").text,
        10,
        "no sweep cell in flight",
    )
    assert server.delete(f"/sweeps/{sweep_id}", params={"purge": "true"}).status_code == 200
    assert server.get(f"/sweeps/{sweep_id}").status_code == 404


def _errors(r) -> list[dict]:
    assert r.status_code == 422, r.text
    assert len(r.content) < 4000  # bounded, whatever was sent
    return r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc", "allowed"),
    [
        ({"grid": {}}, ["body", "grid"], None),
        ({"grid": {"dataset": "moons", "colour": [1]}}, ["body", "grid", "colour"], "one of"),
        ({"grid": {"dataset": "moons", "seed": 1}}, ["body", "grid", "seed"], "seeds"),
        ({"grid": {"dataset": "moons", "variant": []}}, ["body", "grid", "variant"], None),
        (
            {"grid": {"dataset": "moons", "variant": ["baseline", "nope"]}},
            ["body", "grid", "variant", 1],
            "one of",
        ),
        (
            {"grid": {"dataset": "moons", "n": [100, 5, 200]}},
            ["body", "grid", "n", 1],
            "6 <= n <= 100000",
        ),
        (
            {"grid": {"dataset": "moons", "steps": [10, 1000]}},
            ["body", "grid", "steps", 1],
            "1..100",
        ),
        (
            {"grid": {"dataset": "moons"}, "metrics": ["kl_bits", "iq"]},
            ["body", "metrics", 1],
            None,
        ),
        (
            {"grid": {"dataset": "moons", "scale": list(range(100))}, "seeds": 100},
            ["body", "grid"],
            "1 <= cells <= 5000",
        ),
        ({"grid": {"dataset": "moons"}, "seeds": 0}, ["body", "seeds"], None),
    ],
)
def test_bad_grids_are_refused_naming_the_field_and_index(server, body, loc, allowed):
    (first, *_) = _errors(server.post("/sweeps", json=body))
    assert first["loc"] == loc
    if allowed:
        assert allowed in first["allowed"]


def test_a_huge_bad_value_is_not_echoed(server):
    huge = "x" * 100_000
    r = server.post("/sweeps", json={"grid": {"dataset": "moons", "variant": [huge]}})
    assert r.status_code in (413, 422) and huge[:100] not in r.text


def test_unknown_sweeps_are_404(server):
    assert server.get("/sweeps/" + "0" * 32).status_code == 404
    assert server.get("/sweeps/not-an-id").status_code == 422
    assert server.get("/sweeps/" + "0" * 32 + "/results").status_code == 404
    assert server.delete("/sweeps/" + "0" * 32).status_code == 404
    fields = server.get("/sweeps/fields").json()
    assert "scale" in fields["grid"] and "exact.energy_distance" in fields["metrics"]
