"""A throw-away PostgreSQL server on loopback for the session, from the Debian binaries.

The session fixture :func:`postgres` runs ``initdb`` in a fresh temporary directory and
starts the server with ``pg_ctl`` on a free port of 127.0.0.1 (trust authentication, no
fsync: nothing here needs to survive the session), then stops it and deletes the directory
at the end. PostgreSQL refuses to run as root, so as root (the test set-up) the binaries run
as the ``postgres`` user through ``runuser``. Tests ask :meth:`PgServer.new_database` for
an empty database each, so they never see one another's rows.

Skips with a clear message when the server binaries (Debian ``postgresql``, installed by
``scripts/test-services.sh postgresql``) or the psycopg driver are absent.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        dsn = f"host={self.host} port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def server_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/VERSION/bin`` with initdb and pg_ctl, if any."""
    found = [
        Path(path)
        for path in glob.glob("/usr/lib/postgresql/*/bin")
        if (Path(path) / "initdb").is_file() and (Path(path) / "pg_ctl").is_file()
    ]
    return max(found, key=lambda path: int(path.parent.name)) if found else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A running PostgreSQL for the whole session, stopped and deleted at its end."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
            "run scripts/test-services.sh postgresql"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("the psycopg driver is not installed: pip install 'psycopg[binary]'")
    from tests.prom_server import free_port  # here: a test's subprocess imports this module

    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="surgecast-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    data, server_log, port = root / "data", root / "server.log", free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_postgres, *args], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            tail = server_log.read_text()[-2000:] if server_log.exists() else ""
            pytest.fail(f"{' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}{tail}")

    try:
        run(
            str(binaries / "initdb"),
            *("-D", str(data), "-U", "postgres", "--auth=trust"),
            *("--no-sync", "--encoding=UTF8", "--locale=C"),
        )
        options = f"-h 127.0.0.1 -p {port} -k {root} -F"
        pg_ctl = str(binaries / "pg_ctl")
        run(pg_ctl, "start", "-D", str(data), "-l", str(server_log), "-w", "-o", options)
        try:
            yield PgServer("127.0.0.1", port, "postgres")
        finally:
            run(pg_ctl, "stop", "-D", str(data), "-m", "immediate", "-w")
    finally:
        shutil.rmtree(root, ignore_errors=True)
