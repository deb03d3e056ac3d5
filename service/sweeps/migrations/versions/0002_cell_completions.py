"""Who committed each cell's result, and how many times a result was committed: the
several-replica test reads them to show every cell was done exactly once.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("finished_by", sa.String(80)))
        batch.add_column(sa.Column("completions", sa.Integer, nullable=False, server_default="0"))
    # cells finished before this revision were committed once
    op.execute("UPDATE cells SET completions = 1 WHERE state IN ('done', 'failed')")


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.drop_column("completions")
        batch.drop_column("finished_by")
