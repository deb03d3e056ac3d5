"""Alembic's environment: the caller (service.sweeps.store) hands over an open connection."""

from __future__ import annotations

from alembic import context

from service.sweeps.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
