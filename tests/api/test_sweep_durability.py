"""Nothing lost: a server killed with SIGKILL mid-sweep resumes it on restart without redoing
a finished cell; two servers on one PostgreSQL share a sweep, one killed midway, and every cell
is committed exactly once; a database that cannot be opened is named by /readyz."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from service.sweeps.store import SweepStore
from tests.api.test_reload_and_identity import edit_manifest
from tests.live_server import server_process
from tests.polling import wait_until

SLOW_GRID = {"dataset": "moons", "variant": "baseline", "n": 600, "steps": 40}
# no warm-up or cost measurement: these servers' start-ups are most of these tests' time, and
# nothing here reads a latency
QUICK_START = {"WARMUP": "false"}
# the two-replica test needs cells slow enough that both replicas hold some at once
SHARED_GRID = {**SLOW_GRID, "n": 1000, "steps": 100}


def _ready(client) -> None:
    wait_until(lambda: client.get("/readyz").status_code == 200, 90, "the server is ready", 0.2)


def _kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.mark.timeout(240)
def test_a_killed_server_resumes_its_sweep_and_keeps_every_finished_cell(api_store, tmp_path):
    """Then, on the restarted server, a model that breaks mid-sweep (reloaded with a corrupt
    manifest) fails the cells left, each with its reason, and the sweep still ends."""
    data, store = tmp_path / "data", tmp_path / "store"
    shutil.copytree(api_store, store)
    env = {"DATA_DIR": str(data), "SWEEP_CONCURRENCY": "2", "SWEEP_MAX_ACTIVE": "1", **QUICK_START}
    env["ADMIN_TOKEN"] = "s3cret"
    with server_process(store, tmp_path / "first.log", **env) as (proc, client):
        _ready(client)
        sweep_id = client.post("/sweeps", json={"grid": SLOW_GRID, "seeds": 8}).json()["id"]
        wait_until(
            lambda: client.get(f"/sweeps/{sweep_id}?rows=false").json()["done"] >= 3,
            120,
            "three cells done",
            0.1,
        )
        # a second sweep is beyond SWEEP_MAX_ACTIVE: refused with a time to come back
        refused = client.post("/sweeps", json={"grid": SLOW_GRID})
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        _kill(proc)
    db = SweepStore(f"sqlite:///{data / 'sweeps.db'}")
    before = {c["idx"]: c for c in db.cells(sweep_id) if c["state"] == "done"}
    assert 3 <= len(before) < 8
    with server_process(store, tmp_path / "second.log", **env) as (_, client):
        _ready(client)
        wait_until(
            lambda: client.get(f"/sweeps/{sweep_id}?rows=false").json()["state"] == "done",
            120,
            "the sweep finishes after the restart",
            0.2,
        )
        grid = {**SLOW_GRID, "model": "moons-plain"}
        broken = client.post("/sweeps", json={"grid": grid, "seeds": 8}).json()["id"]
        edit_manifest(store / "moons-plain", lambda m: m["model"].update(coord_scale=3.0), False)
        reload = client.post("/admin/reload", headers={"authorization": "Bearer s3cret"})
        assert reload.json()["retired"] == ["moons-plain"]
        ended = wait_until(
            lambda: (s := client.get(f"/sweeps/{broken}").json())["state"] == "done" and s,
            120,
            "the sweep with a broken model ends",
            0.2,
        )
        failed = [r for r in ended["rows"] if r["state"] == "failed"]
        assert failed and ended["done"] + ended["failed"] == 8
        assert all("moons-plain/manifest.json" in r["error"] for r in failed)
    after = {c["idx"]: c for c in db.cells(sweep_id)}
    assert len(after) == 8 and all(c["state"] == "done" for c in after.values())
    for idx, cell in before.items():  # not redone: the same commit, the same numbers
        assert after[idx]["finished_at"] == cell["finished_at"]
        assert after[idx]["result"] == cell["result"]
    assert all(c["completions"] == 1 for c in after.values())


@pytest.mark.timeout(240)
def test_two_servers_share_a_sweep_and_a_killed_ones_cells_are_taken_over(
    api_store, tmp_path, postgres_db_url
):
    env = {"DATABASE_URL": postgres_db_url, "SWEEP_LEASE_S": "1.5", "SWEEP_CONCURRENCY": "2"}
    env.update(QUICK_START)
    store = SweepStore(postgres_db_url)
    with (
        server_process(api_store, tmp_path / "a.log", REPLICA_ID="a", **env) as (proc_a, a),
        server_process(api_store, tmp_path / "b.log", REPLICA_ID="b", **env) as (_, b),
    ):
        _ready(a)
        _ready(b)
        sweep_id = a.post("/sweeps", json={"grid": SHARED_GRID, "seeds": 12}).json()["id"]

        def both_working_and_a_holds_one():
            cells = store.cells(sweep_id)
            finishers = {c["finished_by"] for c in cells if c["state"] == "done"}
            held = [c for c in cells if c["state"] == "running" and c["owner"] == "a"]
            return {"a", "b"} <= finishers and held

        held = wait_until(both_working_and_a_holds_one, 120, "both replicas finish cells", 0.05)
        _kill(proc_a)
        killed_at = time.time()
        wait_until(
            lambda: b.get(f"/sweeps/{sweep_id}?rows=false").json()["state"] == "done",
            120,
            "replica b finishes the sweep alone",
            0.2,
        )
    cells = {c["idx"]: c for c in store.cells(sweep_id)}
    assert len(cells) == 12 and all(c["state"] == "done" for c in cells.values())
    assert all(c["completions"] == 1 for c in cells.values())  # exactly once
    for cell in held:  # what a held when it died, b did after the lease lapsed
        taken = cells[cell["idx"]]
        assert taken["finished_by"] == "b" and taken["attempts"] >= 2
        assert taken["finished_at"] >= killed_at
    assert {c["finished_by"] for c in cells.values()} == {"a", "b"}


def test_a_database_that_cannot_be_opened_is_named_by_readyz(api_store, tmp_path: Path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = {"DATA_DIR": str(blocker), **QUICK_START}
    with server_process(api_store, tmp_path / "s.log", **env) as (_, client):

        def loaded_and_named():
            r = client.get("/readyz")
            return r.json().get("error") and r.json()["models"] and r

        ready = wait_until(loaded_and_named, 60, "the models load and readyz names the database")
        assert ready.status_code == 503 and "not-a-folder/sweeps.db" in ready.json()["error"]
        refused = client.post("/sweeps", json={"grid": {"dataset": "moons"}})
        assert refused.status_code == 503 and "not-a-folder" in refused.json()["detail"]
        assert client.post("/sample", json={"dataset": "moons", "n": 10}).status_code == 200
