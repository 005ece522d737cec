"""`c1222 headend --workers N`: a supervisor that runs N head-end processes (docs/headend.md,
"Workers").

Each worker is `c1222 headend` itself with the same options plus a hidden ``--worker I/N:PORT``:
it listens on the one C12.22 port with SO_REUSEPORT (the kernel spreads connections and
datagram flows over the workers), stores in the one PostgreSQL, follows the registrations the
others stored, and collects the AP titles whose shard is I. Worker I serves its console, API
and /metrics on the --http port plus I. The supervisor holds no protocol logic: it picks the
port, starts the workers, restarts one that dies (kill -9, a crash) with back-off, and stops
them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import click

from c1222.transport.endpoint import Address
from c1222.workers import signal_with_parent

#: Seconds a worker may take to start (open storage, listen) before the supervisor gives up.
START_TIMEOUT = 60.0
#: Restart back-off: the first restart after this many seconds, doubling to RESTART_MAX while
#: the worker keeps dying; a worker that ran RESTART_RESET seconds starts again from the first.
RESTART_FIRST = 0.5
RESTART_MAX = 30.0
RESTART_RESET = 60.0
#: Seconds the workers get to stop on SIGTERM (their own shutdown is bounded at 15 s).
STOP_GRACE = 20.0

_READY = re.compile(r"listening on tcp\+udp (\S+):(\d+)")
_CONSOLE = re.compile(r"console at http (\S+):(\d+)")


@dataclass
class Worker:
    index: int
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    failures: int = 0  # deaths in a row, for the back-off
    console: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    output: list[str] = field(default_factory=list)  # the latest lines, for an error report
    readers: list[asyncio.Task[None]] = field(default_factory=list)


def worker_argv(args: Sequence[str], index: int, count: int, listen: Address,
                http: Address) -> list[str]:
    """The command line of worker ``index``: the supervisor's own options, then the ones that
    differ per worker (click keeps the last of a repeated option). --listen gets port 0 so the
    option's free-port check passes; the shared port is in --worker."""
    web_port = http[1] + index if http[1] else 0
    return [sys.executable, "-m", "c1222.cli", "headend", *args,
            "--workers", "1", "--listen", f"{_host(listen[0])}:0",
            "--http", f"{_host(http[0])}:{web_port}",
            "--worker", f"{index}/{count}:{listen[1]}"]


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def reserve_port(listen: Address) -> tuple[int, socket.socket]:
    """A port for TCP and UDP on ``listen``'s host (``listen``'s own unless 0). The TCP socket
    returned stays bound, with SO_REUSEPORT and never listening, so the port stays ours while
    workers come and go (a listening socket of another program could not take it)."""
    host, port = listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(20):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        chosen = sock.getsockname()[1]
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                udp.bind((host, chosen))
            except OSError:
                sock.close()
                if port:
                    raise
                continue  # the kernel's TCP port is taken for UDP: pick another
        return chosen, sock
    raise click.ClickException(f"no port free for both TCP and UDP on {host}")


class Supervisor:
    def __init__(self, args: Sequence[str], count: int, listen: Address, http: Address,
                 ap_title: str) -> None:
        self.args = list(args)
        self.count = count
        self.listen = listen
        self.http = http
        self.ap_title = ap_title
        self.workers: list[Worker] = []
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def _spawn(self, worker: Worker) -> None:
        worker.ready.clear()
        worker.proc = await asyncio.create_subprocess_exec(
            *worker.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Own session: a Ctrl-C at the terminal reaches the supervisor only, which then
            # stops each worker once (a second signal would make a worker exit at once).
            start_new_session=True, preexec_fn=signal_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        worker.started = time.monotonic()
        worker.readers = [asyncio.create_task(self._read(worker, worker.proc)),
                          asyncio.create_task(self._read_log(worker, worker.proc))]
        self._tasks += worker.readers

    async def _read(self, worker: Worker, proc: asyncio.subprocess.Process) -> None:
        """The worker's stdout: its ready lines (the supervisor prints its own), the rest
        passed on with the worker's number."""
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            worker.output = [*worker.output[-40:], text]
            if (found := _CONSOLE.search(text)) and not worker.ready.is_set():
                worker.console = f"{found.group(1)}:{found.group(2)}"
                worker.ready.set()
            elif worker.ready.is_set() or not _READY.search(text):
                click.echo(f"worker {worker.index}: {text}")

    async def _read_log(self, worker: Worker, proc: asyncio.subprocess.Process) -> None:
        """The worker's stderr (its log and errors) to ours, line by line with its number."""
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace").rstrip("\n")
            worker.output = [*worker.output[-40:], text]
            click.echo(f"worker {worker.index}: {text}", err=True)

    async def start(self) -> list[str]:
        port, self._hold = reserve_port(self.listen)
        address = (self.listen[0], port)
        self.workers = [Worker(i, worker_argv(self.args, i, self.count, address, self.http))
                        for i in range(self.count)]
        for worker in self.workers:
            await self._spawn(worker)
        for worker in self.workers:
            await self._wait_ready(worker)
        self._tasks.append(asyncio.create_task(self._watch()))
        first = self.workers[0].console
        return [f"headend {self.ap_title} listening on tcp+udp {_host(address[0])}:{port} "
                f"({self.count} workers)",
                f"console at http {first}  ->  http://{first}/",
                *(f"worker {w.index} pid {w.proc.pid if w.proc else '?'} console at http "
                  f"{w.console}" for w in self.workers)]

    async def _wait_ready(self, worker: Worker) -> None:
        assert worker.proc is not None
        waiting = asyncio.create_task(worker.ready.wait())
        exited = asyncio.create_task(worker.proc.wait())
        done, _ = await asyncio.wait({waiting, exited}, timeout=START_TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        exited.cancel()
        if not worker.ready.is_set():
            if exited in done:  # its last words
                await asyncio.wait(worker.readers, timeout=5)
            await self.stop()
            # its one-line error, as `c1222 headend` alone would have said it
            why = next((line.split(": error: ", 1)[1] for line in reversed(worker.output)
                        if ": error: " in line), None)
            status = worker.proc.returncode
            message = (f"worker {worker.index} did not start: {why or f'exit status {status}'}"
                       if exited in done else
                       f"worker {worker.index} did not start in {START_TIMEOUT:.0f} s")
            # a usage error of the worker (a port taken since the check): the same status, 2
            raise click.UsageError(message) if status == 2 else click.ClickException(message)

    async def _watch(self) -> None:
        """Restart each worker that ends while the supervisor is not stopping."""
        async def watch_one(worker: Worker) -> None:
            while not self.stopping:
                assert worker.proc is not None
                status = await worker.proc.wait()
                if self.stopping:
                    return
                lived = time.monotonic() - worker.started
                worker.failures = 1 if lived >= RESTART_RESET else worker.failures + 1
                delay = min(RESTART_MAX, RESTART_FIRST * 2 ** (worker.failures - 1))
                click.echo(f"worker {worker.index} (pid {worker.proc.pid}) ended with status "
                           f"{status} after {lived:.1f} s; restarting it in {delay:.1f} s",
                           err=True)
                await asyncio.sleep(delay)
                if self.stopping:
                    return
                worker.restarts += 1
                await self._spawn(worker)
                try:
                    await asyncio.wait_for(worker.ready.wait(), START_TIMEOUT)
                except asyncio.TimeoutError:
                    click.echo(f"worker {worker.index} did not start again in "
                               f"{START_TIMEOUT:.0f} s; killing it", err=True)
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
                    continue
                click.echo(f"worker {worker.index} restarted: pid {worker.proc.pid} console "
                           f"at http {worker.console}")

        await asyncio.gather(*(watch_one(w) for w in self.workers))

    async def stop(self) -> None:
        """SIGTERM to every worker (each stops cleanly: readings stored, outbox sent), then
        SIGKILL to any still running after STOP_GRACE."""
        self.stopping = True
        running = [w.proc for w in self.workers if w.proc and w.proc.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), STOP_GRACE)
        except asyncio.TimeoutError:
            for proc in running:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for worker in self.workers:  # one being restarted just as the stop came
            proc = worker.proc
            if proc is not None and proc.returncode is None and proc not in running:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        hold = getattr(self, "_hold", None)
        if hold is not None:
            hold.close()
