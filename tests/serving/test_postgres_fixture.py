"""The PostgreSQL fixture starts a real server, and its row locks behave as the sweeps expect."""

from __future__ import annotations

import sqlalchemy as sa


def test_a_real_postgres_whose_skip_locked_skips_a_locked_row(postgres_db_url: str) -> None:
    engine = sa.create_engine(postgres_db_url)
    try:
        with engine.begin() as setup:
            assert "PostgreSQL" in setup.execute(sa.text("SELECT version()")).scalar_one()
            setup.execute(sa.text("CREATE TABLE jobs (id int PRIMARY KEY)"))
            setup.execute(sa.text("INSERT INTO jobs VALUES (1), (2)"))
        claim = sa.text("SELECT id FROM jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED")
        with engine.connect() as first, engine.connect() as second:
            assert first.execute(claim).scalar_one() == 1
            # the first's transaction still holds row 1: the second claims the next row
            assert second.execute(claim).scalar_one() == 2
            second.rollback()
            first.rollback()
            # row 1 is free again once the first's transaction ends
            assert second.execute(claim).scalar_one() == 1
    finally:
        engine.dispose()
