"""A real PostgreSQL server for the session (Debian's `postgresql` package: `make tools`), and
an empty database on it: `postgres_db_url` one per test, `postgres_url` one the session shares.

The fixtures fail, never skip, when the server's binaries are missing: a missing tool is a setup
error to fix, not a test to leave out.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.live_server import free_port

BINARIES = ("initdb", "pg_ctl", "postgres")
# fsync and friends off: the data lives for one session and a crash loses nothing of value
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
"""
_database_numbers = itertools.count()


def server_bin() -> Path:
    """The highest version's bin directory under /usr/lib/postgresql (Debian puts the server's
    binaries there, off PATH), else the one holding initdb on PATH."""
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates = sorted(
        versions, key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0
    )
    if initdb := shutil.which("initdb"):
        candidates.insert(0, Path(initdb).parent)
    for bin_dir in reversed(candidates):
        if all((bin_dir / name).is_file() for name in BINARIES):
            return bin_dir
    pytest.fail(
        "PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found under "
        "/usr/lib/postgresql/*/bin or on PATH: run `make tools` (Debian's postgresql package)",
        pytrace=False,
    )


def _create_database(port: int, name: str) -> str:
    admin = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's server, started here: a SQLAlchemy URL to an empty database on it that the
    whole session shares. The server is stopped after the session, whatever its tests did."""
    bin_dir = server_bin()
    as_user: list[str] = []
    # initdb and postgres refuse to run as root: as root they run as the package's postgres user,
    # in a directory of /tmp it owns (pytest's own temp root is 0700, closed to that user)
    root = Path(tempfile.mkdtemp(prefix="dgs-postgres-"))
    try:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(
                    "no postgres user to run the server as: run `make tools`", pytrace=False
                )
            os.chown(root, owner.pw_uid, owner.pw_gid)
            as_user = ["runuser", "-u", "postgres", "--"]

        def run(*command: str) -> None:
            done = subprocess.run(
                [*as_user, *command], cwd=root, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}{done.stderr}"

        data, log, sockets = root / "data", root / "server.log", root / "sockets"
        pg_ctl = str(bin_dir / "pg_ctl")
        # the superuser is `postgres` whoever runs the server; trust for local and host logins
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        run(*initdb, "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        run("mkdir", str(sockets))
        port = free_port()
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(SETTINGS.format(port=port, sockets=sockets))
        try:
            try:
                run(pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "30", "start")
            except AssertionError as error:
                server_log = log.read_text() if log.exists() else ""
                raise AssertionError(f"{error}\nserver log:\n{server_log[-3000:]}") from None
            yield _create_database(port, "session")
        finally:
            # the server may be half started; stopping one that is not running fails harmlessly
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                cwd=root,
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db_url(postgres_url: str) -> str:
    """A SQLAlchemy URL to a new empty database of this test's own, on the session's server."""
    port = make_url(postgres_url).port
    return _create_database(port, f"test_{next(_database_numbers)}")
