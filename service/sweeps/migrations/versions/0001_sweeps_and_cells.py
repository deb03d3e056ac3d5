"""Sweeps and their cells.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("predicted_s", sa.Float, nullable=False),
    )
    op.create_table(
        "cells",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "sweep_id",
            sa.String(32),
            sa.ForeignKey("sweeps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("config", sa.Integer, nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(80)),
        sa.Column("lease_until", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("model", sa.String(64)),
        sa.Column("seconds", sa.Float),
        sa.Column("finished_at", sa.Float),
    )
    op.create_index("ix_cells_sweep_idx", "cells", ["sweep_id", "idx"], unique=True)
    op.create_index("ix_cells_state", "cells", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_table("cells")
    op.drop_table("sweeps")
