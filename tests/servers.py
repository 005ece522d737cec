"""The servers the tests need: PostgreSQL, and NATS with JetStream (one place for both).

* PostgreSQL: ``C1222_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
  when it answers; otherwise a private instance for the run: ``initdb`` in a temporary folder
  (as the ``postgres`` user when run as root, since PostgreSQL refuses to run as root) and
  ``postgres`` on a free port of 127.0.0.1.
* NATS: ``C1222_TEST_NATS`` (default ``nats://127.0.0.1:4222``) when it answers with JetStream;
  otherwise ``nats-server -js -p PORT -sd DIR`` for the run.

``make test`` installs Debian's ``postgresql`` and ``nats-server`` when they are missing (the
Makefile's ``system-deps``). With neither a server nor the programs a test skips, saying why,
or fails under ``C1222_REQUIRE_ALL=1`` (CI).

Fixtures (import them into a test module, ``from tests.servers import pg_url, ...``):
``pg_base`` (session: a URL without schema), ``pg_url`` (a schema of the test's own, dropped
afterwards, as ``?schema=``), ``nats_url`` (session). :class:`PrivateNats` starts and stops a
NATS server a test owns (to take it down mid-run).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
NATS_DEFAULT = "nats://127.0.0.1:4222"
#: Seconds a private server may take to answer.
START_TIMEOUT = 60.0


def missing(reason: str) -> None:
    """Skip on a developer's machine; fail in CI (as tests/interop/tshark.py)."""
    if os.environ.get("C1222_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (C1222_REQUIRE_ALL=1 requires it)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now (for a server given its port
    before it starts: C12.22 listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no port free for both TCP and UDP")


def _wait(check: Callable[[], bool], what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer in {START_TIMEOUT:.0f} s")


# -- PostgreSQL --------------------------------------------------------------------------------

def pg_answers(url: str) -> str | None:
    """None when ``url`` accepts a connection, else why not (one line)."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return " ".join(str(exc).split())
    return None


def pg_program(name: str) -> str | None:
    """Debian keeps initdb and postgres out of PATH, under /usr/lib/postgresql/VERSION/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return candidates[-1] if candidates else None


class PrivatePostgres:
    """A PostgreSQL cluster of this run: a temporary folder, a free port, trust auth."""

    def __init__(self) -> None:
        initdb, postgres = pg_program("initdb"), pg_program("postgres")
        if not initdb or not postgres:
            raise FileNotFoundError("initdb/postgres not found (Debian package postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="c1222-pg-"))
        self.port = free_port()
        as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses root: run it as the postgres user
            shutil.chown(self.dir, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C"], check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [*as_user, postgres, "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        _wait(lambda: pg_answers(admin) is None, "private postgres", self.proc)
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE test")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def find_postgres(url: str | None = None) -> tuple[str, PrivatePostgres | None]:
    """A PostgreSQL URL that answers: ``url`` (default: C1222_TEST_POSTGRES or 5432), else a
    private instance (returned too, to stop). Calls :func:`missing` when neither can be had."""
    url = url or os.environ.get("C1222_TEST_POSTGRES", PG_DEFAULT)
    why = pg_answers(url)
    if why is None:
        return url, None
    try:
        private = PrivatePostgres()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.decode(errors="replace")[-300:] if isinstance(
            exc, subprocess.CalledProcessError) else str(exc)
        missing(f"PostgreSQL is not reachable at {url} ({why}) and no private instance "
                f"could start: {' '.join(detail.split())}")
        raise  # not reached
    return private.url, private


@pytest.fixture(scope="session")
def pg_base() -> Iterator[str]:
    url, private = find_postgres()
    yield url
    if private is not None:
        private.stop()


@pytest.fixture
def pg_url(pg_base: str) -> Iterator[str]:
    """``pg_base`` with a schema of this test's own (``?schema=``), dropped afterwards."""
    import psycopg

    schema = f"c1222_test_{uuid.uuid4().hex[:10]}"
    yield f"{pg_base}?schema={schema}"
    with psycopg.connect(pg_base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- NATS with JetStream -----------------------------------------------------------------------

def nats_answers(url: str) -> str | None:
    """None when ``url`` is a NATS server with JetStream enabled, else why not."""
    import nats

    async def quiet(exc: Exception) -> None:
        pass  # nats-py would print a traceback per failed attempt

    async def probe() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, error_cb=quiet,
                                max_reconnect_attempts=1, reconnect_time_wait=0.1)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), 10))
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable", said in one line
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


class PrivateNats:
    """``nats-server -js`` of this run on a free (or given) port of 127.0.0.1; ``stop()`` and
    ``start()`` again keep its port and store (a test takes it down mid-run)."""

    def __init__(self, port: int | None = None) -> None:
        self.program = shutil.which("nats-server") or (
            "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
        if not self.program:
            raise FileNotFoundError("nats-server not found (Debian package nats-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="c1222-nats-"))
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateNats:
        self.proc = subprocess.Popen(
            [self.program, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
             str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: nats_answers(self.url) is None, "private nats-server", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def find_nats(url: str | None = None) -> tuple[str, PrivateNats | None]:
    """A NATS-with-JetStream URL that answers (as :func:`find_postgres`)."""
    url = url or os.environ.get("C1222_TEST_NATS", NATS_DEFAULT)
    why = nats_answers(url)
    if why is None:
        return url, None
    try:
        private = PrivateNats().start()
    except (OSError, RuntimeError) as exc:
        missing(f"NATS with JetStream is not reachable at {url} ({why}) and no private "
                f"nats-server could start: {exc}")
        raise  # not reached
    return private.url, private


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    url, private = find_nats()
    yield url
    if private is not None:
        private.close()


def private_nats() -> PrivateNats:
    """A NATS server the test owns (not started), or :func:`missing` without nats-server."""
    try:
        return PrivateNats()
    except FileNotFoundError as exc:
        missing(str(exc))
        raise  # not reached
