"""The sweeps database's tables (SQLAlchemy Core). Alembic's migrations build them; this is the
shape the code reads and writes, and a test checks that the migrations arrive at it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

sweeps = Table(
    "sweeps",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200)),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    # running -> done (no cell left), or cancelled
    Column("state", String(16), nullable=False),
    Column("spec", JSON, nullable=False),  # the grid, seeds and metrics as submitted
    Column("total", Integer, nullable=False),
    Column("predicted_s", Float, nullable=False),
)

cells = Table(
    "cells",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sweep_id", String(32), ForeignKey("sweeps.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("config", Integer, nullable=False),  # cells of one config differ only by seed
    Column("request", JSON, nullable=False),  # the full /evaluate request, seed included
    # pending -> running (claimed, under a lease) -> done | failed; a lapsed lease is pending
    Column("state", String(16), nullable=False),
    Column("owner", String(80)),
    Column("lease_until", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("result", JSON),
    Column("error", Text),
    Column("model", String(64)),
    Column("seconds", Float),
    Column("finished_at", Float),
    # revision 0002: who committed the result, and how many times one was (exactly once)
    Column("finished_by", String(80)),
    Column("completions", Integer, nullable=False, default=0),
    Index("ix_cells_sweep_idx", "sweep_id", "idx", unique=True),
    Index("ix_cells_state", "state", "lease_until"),
)
