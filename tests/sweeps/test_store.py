"""The sweeps database on SQLite and on a real PostgreSQL server: claims, leases, the
exactly-once commit, cancellation, migrations from an older schema, and unusable databases."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.sweeps.store import StoreError, SweepStore


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'sweeps.db'}"
    return request.getfixturevalue("postgres_db_url")


def _sweep(store: SweepStore, cells: int = 4) -> str:
    requests = [{"dataset": "moons", "seed": i} for i in range(cells)]
    return store.create({"metrics": ["kl_bits"]}, requests, list(range(cells)), 1.0, "t")


def test_claim_finish_and_the_sweep_is_done(url):
    store = SweepStore(url, owner="a")
    sweep_id = _sweep(store, 3)
    claimed = store.claim(2, lease_s=30)
    assert [c.idx for c in claimed] == [0, 1] and claimed[0].metrics == ["kl_bits"]
    assert [c.idx for c in store.claim(5, lease_s=30)] == [2]  # the rest, never the same twice
    assert store.claim(5, lease_s=30) == []
    for c in claimed:
        assert store.finish(c.id, result={"kl_bits": 0.1}, model="m", seconds=1.0)
    assert store.sweep(sweep_id)["state"] == "running"
    last = [c for c in store.cells(sweep_id) if c["state"] == "running"][0]
    assert store.finish(last["id"], error="non-finite")
    found = store.sweep(sweep_id)
    assert found["state"] == "done" and found["counts"] == {"done": 2, "failed": 1}
    assert all(c["completions"] == 1 and c["finished_by"] == "a" for c in store.cells(sweep_id))
    assert store.in_hand() == (0, 0.0)


def test_a_lapsed_lease_is_taken_over_and_the_late_owner_cannot_commit(url):
    a, b = SweepStore(url, owner="a"), SweepStore(url, owner="b")
    sweep_id = _sweep(a, 1)
    (cell,) = a.claim(1, lease_s=0.2)
    assert b.claim(1, lease_s=30) == []  # a's lease holds
    time.sleep(0.3)
    assert a.renew([cell.id], lease_s=30) == {cell.id}  # a renewal in time keeps it
    time.sleep(0.05)
    assert b.claim(1, lease_s=30) == []
    a.renew([cell.id], lease_s=0.01)
    time.sleep(0.05)
    (taken,) = b.claim(1, lease_s=30)  # a stopped renewing: b takes the cell over
    assert taken.id == cell.id and taken.attempts == 2
    assert not a.finish(cell.id, result={"kl_bits": 9.9})  # a comes back too late
    assert a.renew([cell.id], lease_s=30) == set()
    assert b.finish(cell.id, result={"kl_bits": 0.1})
    (row,) = a.cells(sweep_id)
    assert row["result"] == {"kl_bits": 0.1} and row["completions"] == 1
    assert row["finished_by"] == "b"


def test_cancel_drops_unfinished_cells_and_keeps_finished_ones(url):
    store = SweepStore(url, owner="a")
    sweep_id = _sweep(store, 4)
    first, second = store.claim(2, lease_s=30)
    store.finish(first.id, result={"kl_bits": 0.1})
    assert store.in_hand()[0] == 1 and store.in_hand()[1] == pytest.approx(0.75)
    assert store.cancel(sweep_id)
    found = store.sweep(sweep_id)
    assert found["state"] == "cancelled" and found["counts"] == {"done": 1}
    assert store.renew([second.id], 30) == set()  # its runner stops at the next renewal
    assert not store.finish(second.id, result={"kl_bits": 0.2})
    assert store.claim(5, 30) == []
    assert store.cancel(sweep_id, purge=True) and store.sweep(sweep_id) is None
    assert not store.cancel("0" * 32)


def test_release_and_reclaim_make_cells_pending_again(url):
    store = SweepStore(url, owner="a")
    sweep_id = _sweep(store, 2)
    one, two = store.claim(2, lease_s=30)
    store.release([one.id])
    assert [c.idx for c in store.claim(5, 30)] == [0]
    assert store.reclaim_all() == 2
    assert {c["state"] for c in store.cells(sweep_id)} == {"pending"}


def test_a_newer_server_opens_an_older_database(url):
    """A database written at revision 0001 (before `completions`) is upgraded in place and
    keeps its sweeps, its finished cells counted as committed once."""
    old = SweepStore(url, owner="old", migrate_to="0001")
    with old.engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO sweeps (id, created_at, state, spec, total, predicted_s) "
                "VALUES ('s1', 1.0, 'running', '{\"metrics\": []}', 2, 1.0)"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO cells (sweep_id, idx, config, request, state, attempts, result) "
                "VALUES ('s1', 0, 0, '{}', 'done', 1, '{\"kl_bits\": 0.5}'), "
                "('s1', 1, 1, '{}', 'pending', 0, NULL)"
            )
        )
    old.close()
    new = SweepStore(url, owner="new")
    cells = new.cells("s1")
    assert [c["completions"] for c in cells] == [1, 0]
    assert cells[0]["result"] == {"kl_bits": 0.5}
    (claimed,) = new.claim(5, 30)
    assert claimed.idx == 1 and new.finish(claimed.id, result={"kl_bits": 0.4})
    assert new.sweep("s1")["state"] == "done"


def test_the_migrations_build_the_tables_the_code_uses(url):
    store = SweepStore(url)
    inspector = sa.inspect(store.engine)
    from service.sweeps.tables import metadata

    for table in metadata.tables.values():
        assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys())


def test_an_unusable_database_is_an_error_naming_it(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="file/sweeps.db"):
        SweepStore(f"sqlite:///{blocker / 'sweeps.db'}")
    with pytest.raises(StoreError) as e:
        SweepStore("postgresql+psycopg://dgs:secret@127.0.0.1:1/dgs")
    assert "127.0.0.1:1/dgs" in str(e.value) and "secret" not in str(e.value)
