"""The sweeps database: SQLite (one replica; a file under DATA_DIR, WAL) or PostgreSQL
(DATABASE_URL; any number of replicas).

Every method is one short transaction, so a finished cell is committed the moment it is
recorded. Cells are claimed under a lease: `claim` takes pending cells, and running cells whose
lease has lapsed (their replica died), with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two
replicas never take the same cell; `finish` commits a result only while the lease is still the
caller's, so a replica that comes back after its cell was taken over cannot record it twice.
Leases are wall-clock seconds (time.time()): replicas must keep their clocks in step (NTP).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import alembic.command
import alembic.config
from sqlalchemy import (
    Engine,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url

from service.sweeps.tables import cells, sweeps

MIGRATIONS = Path(__file__).parent / "migrations"
UNFINISHED = ("pending", "running")
FINISHED = ("done", "failed")


class StoreError(Exception):
    """The database cannot be opened, migrated or written; the message names it."""


@dataclass(frozen=True)
class Claimed:
    id: int
    sweep_id: str
    idx: int
    request: dict[str, Any]
    attempts: int
    metrics: list[str]  # its sweep's


def database_url(url: str | None, data_dir: Path) -> str:
    return url or f"sqlite:///{data_dir / 'sweeps.db'}"


def describe_url(url: str) -> str:
    """The URL with its password hidden, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<an unparsable DATABASE_URL>"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, fast
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # noqa: ANN001
        # a write lock from the start: a claim's read and update cannot interleave with another
        # writer's (SQLite has no FOR UPDATE)
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine, revision: str = "head") -> None:
    config = alembic.config.Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        alembic.command.upgrade(config, revision)


def open_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        _sqlite_setup(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class SweepStore:
    def __init__(self, url: str, owner: str | None = None, migrate_to: str = "head"):
        """Open (creating or upgrading the schema) or raise StoreError naming the database."""
        self.url = url
        self.where = describe_url(url)
        self.owner = owner or uuid.uuid4().hex[:12]
        try:
            self.engine = open_engine(url)
            self.sqlite = self.engine.dialect.name == "sqlite"
            migrate(self.engine, migrate_to)
            with self.engine.begin() as c:  # and can be written
                c.execute(update(sweeps).where(sweeps.c.id == "").values(state="x"))
        except Exception as e:
            raise StoreError(
                f"the sweeps database {self.where} cannot be used: {_reason(e)}"
            ) from e

    def close(self) -> None:
        self.engine.dispose()

    # Sweeps

    def create(
        self,
        spec: dict[str, Any],
        requests: list[dict[str, Any]],
        configs: list[int],
        predicted_s: float,
        name: str | None = None,
    ) -> str:
        sweep_id = uuid.uuid4().hex
        now = time.time()
        with self.engine.begin() as c:
            c.execute(
                insert(sweeps).values(
                    id=sweep_id,
                    name=name,
                    created_at=now,
                    state="running",
                    spec=spec,
                    total=len(requests),
                    predicted_s=predicted_s,
                )
            )
            rows = [
                {
                    "sweep_id": sweep_id,
                    "idx": i,
                    "config": config,
                    "request": request,
                    "state": "pending",
                    "attempts": 0,
                    "completions": 0,
                }
                for i, (request, config) in enumerate(zip(requests, configs, strict=True))
            ]
            c.execute(insert(cells), rows)
        return sweep_id

    def sweep(self, sweep_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(select(sweeps).where(sweeps.c.id == sweep_id)).mappings().first()
            if row is None:
                return None
            counts = self._counts(c, [sweep_id]).get(sweep_id, {})
        return {**row, "counts": counts}

    def sweeps(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(
                select(sweeps).order_by(sweeps.c.created_at.desc()).limit(limit)
            ).mappings()
            rows = [dict(r) for r in rows]
            counts = self._counts(c, [r["id"] for r in rows])
        return [{**r, "counts": counts.get(r["id"], {})} for r in rows]

    @staticmethod
    def _counts(c, ids: list[str]) -> dict[str, dict[str, int]]:  # noqa: ANN001
        out: dict[str, dict[str, int]] = {}
        if not ids:
            return out
        query = (
            select(cells.c.sweep_id, cells.c.state, func.count())
            .where(cells.c.sweep_id.in_(ids))
            .group_by(cells.c.sweep_id, cells.c.state)
        )
        for sweep_id, state, n in c.execute(query):
            out.setdefault(sweep_id, {})[state] = n
        return out

    def in_hand(self) -> tuple[int, float]:
        """Sweeps running, and their predicted seconds of work not yet done."""
        with self.engine.connect() as c:
            active = c.execute(
                select(sweeps.c.id, sweeps.c.total, sweeps.c.predicted_s).where(
                    sweeps.c.state == "running"
                )
            ).all()
            left = self._counts(c, [a.id for a in active])
        work = sum(
            a.predicted_s * sum(left.get(a.id, {}).get(s, 0) for s in UNFINISHED) / max(a.total, 1)
            for a in active
        )
        return len(active), work

    def cells(self, sweep_id: str, finished_only: bool = False) -> list[dict[str, Any]]:
        query = select(cells).where(cells.c.sweep_id == sweep_id).order_by(cells.c.idx)
        if finished_only:
            query = query.where(cells.c.state.in_(FINISHED))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(query).mappings()]

    def cancel(self, sweep_id: str, purge: bool = False) -> bool:
        """Stop a sweep: its unfinished cells are deleted (a replica running one finds it gone
        at its next lease renewal), its finished ones kept unless `purge`. False: no such sweep."""
        with self.engine.begin() as c:
            found = c.execute(
                update(sweeps)
                .where(sweeps.c.id == sweep_id)
                .values(
                    state=case((sweeps.c.state == "running", "cancelled"), else_=sweeps.c.state),
                    finished_at=func.coalesce(sweeps.c.finished_at, time.time()),
                )
            ).rowcount
            if not found:
                return False
            if purge:
                c.execute(delete(cells).where(cells.c.sweep_id == sweep_id))
                c.execute(delete(sweeps).where(sweeps.c.id == sweep_id))
            else:
                c.execute(
                    delete(cells).where(cells.c.sweep_id == sweep_id, cells.c.state.in_(UNFINISHED))
                )
        return True

    # Cells

    def claim(self, limit: int, lease_s: float) -> list[Claimed]:
        """Up to `limit` cells of running sweeps, oldest sweep first, now leased to this owner."""
        now = time.time()
        with self.engine.begin() as c:
            ids = (
                c.execute(
                    select(cells.c.id)
                    .join(sweeps, sweeps.c.id == cells.c.sweep_id)
                    .where(
                        sweeps.c.state == "running",
                        or_(
                            cells.c.state == "pending",
                            and_(cells.c.state == "running", cells.c.lease_until < now),
                        ),
                    )
                    .order_by(sweeps.c.created_at, cells.c.idx)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=cells)
                )
                .scalars()
                .all()
            )
            if not ids:
                return []
            c.execute(
                update(cells)
                .where(cells.c.id.in_(ids))
                .values(
                    state="running",
                    owner=self.owner,
                    lease_until=now + lease_s,
                    attempts=cells.c.attempts + 1,
                )
            )
            rows = c.execute(
                select(
                    cells.c.id,
                    cells.c.sweep_id,
                    cells.c.idx,
                    cells.c.request,
                    cells.c.attempts,
                    sweeps.c.spec,
                )
                .join(sweeps, sweeps.c.id == cells.c.sweep_id)
                .where(cells.c.id.in_(ids))
                .order_by(cells.c.idx)
            ).all()
        return [Claimed(*r[:5], metrics=list(r[5].get("metrics", []))) for r in rows]

    def renew(self, ids: list[int], lease_s: float) -> set[int]:
        """Extend this owner's leases; -> the ids still ours (a cancelled cell is gone)."""
        if not ids:
            return set()
        mine = and_(cells.c.id.in_(ids), cells.c.owner == self.owner, cells.c.state == "running")
        with self.engine.begin() as c:
            c.execute(update(cells).where(mine).values(lease_until=time.time() + lease_s))
            return set(c.execute(select(cells.c.id).where(mine)).scalars())

    def finish(
        self,
        cell_id: int,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        model: str | None = None,
        seconds: float | None = None,
    ) -> bool:
        """Commit a cell's result (or its failure) if its lease is still ours; then, if it was
        its sweep's last, mark the sweep done. False: the cell was taken over or cancelled."""
        now = time.time()
        with self.engine.begin() as c:
            mine = and_(
                cells.c.id == cell_id, cells.c.owner == self.owner, cells.c.state == "running"
            )
            sweep_id = c.execute(select(cells.c.sweep_id).where(mine)).scalar()
            if sweep_id is None:
                return False
            c.execute(
                update(cells)
                .where(mine)
                .values(
                    state="failed" if error is not None else "done",
                    result=result,
                    error=error,
                    model=model,
                    seconds=seconds,
                    finished_at=now,
                    finished_by=self.owner,
                    lease_until=None,
                    completions=cells.c.completions + 1,
                )
            )
            left = c.execute(
                select(func.count()).where(
                    cells.c.sweep_id == sweep_id, cells.c.state.in_(UNFINISHED)
                )
            ).scalar()
            if not left:
                c.execute(
                    update(sweeps)
                    .where(sweeps.c.id == sweep_id, sweeps.c.state == "running")
                    .values(state="done", finished_at=now)
                )
        return True

    def release(self, ids: list[int]) -> None:
        """Hand cells back unrun (the server was busy, or is stopping): pending again."""
        if not ids:
            return
        with self.engine.begin() as c:
            c.execute(
                update(cells)
                .where(cells.c.id.in_(ids), cells.c.owner == self.owner, cells.c.state == "running")
                .values(state="pending", owner=None, lease_until=None)
            )

    def reclaim_all(self) -> int:
        """SQLite only (one replica per file): at start-up every running cell is the dead
        process's, so it is pending again at once instead of after its lease."""
        with self.engine.begin() as c:
            return c.execute(
                update(cells)
                .where(cells.c.state == "running")
                .values(state="pending", owner=None, lease_until=None)
            ).rowcount


def _reason(e: Exception) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
