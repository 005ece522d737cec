"""`c1222 fleet` across processes: workers (multiprocessing spawn), progress and summary.

The parent splits the meters into ``workers`` contiguous ranges, starts one process per range
(:func:`worker_main`, each a :class:`~c1222.fleet.node.FleetWorker` on its own port), shows a
progress bar of registered meters while they start, and on Ctrl-C or SIGTERM stops every worker
(SIGTERM), collects their counts and prints the summary. Workers report over one queue; a
worker that dies is named and the others are stopped. Workers ignore SIGINT (the terminal
sends it to the whole process group): only the parent decides when they stop, and a worker
whose parent is gone stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue as queues
import resource
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from c1222.fleet.node import FleetWorker, WorkerConfig
from c1222.workers import exit_with_parent

#: Seconds a worker may take to build its meters and listen.
START_TIMEOUT = 300.0
#: Seconds the workers get to stop before they are killed.
STOP_TIMEOUT = 15.0
#: Seconds between two progress reports of a worker.
REPORT_EVERY = 0.5


def split(config: WorkerConfig, meters: int, workers: int) -> list[WorkerConfig]:
    """One config per worker: contiguous ranges of meters, consecutive ports (port 0: any)."""
    workers = max(1, min(workers, meters))
    host, port = config.listen
    out, first = [], 0
    for w in range(workers):
        count = meters // workers + (1 if w < meters % workers else 0)
        out.append(replace(config, first=first, count=count, total=meters,
                           listen=(host, port + w if port else 0)))
        first += count
    return out


# ---------------------------------------------------------------------------- the worker


def worker_main(config: WorkerConfig, reports: Any, number: int, verbose: int) -> None:
    """Entry of a worker process."""
    exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):  # a connection per meter, and the head-end's
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
                        format=f"%(asctime)s fleet[{number}] %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(_worker(config, reports, number))
    except Exception as exc:  # noqa: BLE001 - said to the parent, which names the worker
        reports.put(("error", number, f"{type(exc).__name__}: {exc}"))


async def _worker(config: WorkerConfig, reports: Any, number: int) -> None:
    worker = FleetWorker(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        address = await worker.start()
    except OSError as exc:
        reports.put(("error", number, f"cannot listen on {config.listen[0]}:"
                                      f"{config.listen[1]}: {exc.strerror or exc}"))
        await worker.stop()
        return
    reports.put(("ready", number, address))
    parent = os.getppid()
    try:
        while not stop.is_set() and os.getppid() == parent:
            reports.put(("progress", number, worker.stats.as_dict()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), REPORT_EVERY)
    finally:
        await worker.stop()
        reports.put(("summary", number, worker.stats.as_dict()))


# ---------------------------------------------------------------------------- the parent


def total(stats: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The workers' counts summed."""
    out: dict[str, Any] = {"registered": 0, "registrations_ok": 0, "registrations_failed": 0,
                           "unknown_title": 0, "undecodable": 0, "requests": Counter(),
                           "errors": Counter(), "last_error": ""}
    for s in stats.values():
        for key in ("registered", "registrations_ok", "registrations_failed", "unknown_title",
                    "undecodable"):
            out[key] += s.get(key, 0)
        out["requests"].update(s.get("requests", {}))
        out["errors"].update(s.get("errors", {}))
        out["last_error"] = s.get("last_error") or out["last_error"]
    return out


def summary_lines(stats: dict[str, Any], meters: int, seconds: float) -> list[str]:
    requests = ", ".join(f"{name} {n:,}" for name, n in sorted(stats["requests"].items())) \
        or "none"
    errors = ", ".join(f"{name} {n:,}" for name, n in sorted(stats["errors"].items())) or "none"
    lines = [f"fleet summary: {meters:,} meters, {seconds:.1f} s",
             f"  registered at the end: {stats['registered']:,} of {meters:,}",
             f"  registrations ok {stats['registrations_ok']:,}, "
             f"failed {stats['registrations_failed']:,}",
             f"  requests served: {requests}",
             f"  error responses: {errors}",
             f"  requests for unknown AP titles {stats['unknown_title']:,}, "
             f"undecodable {stats['undecodable']:,}"]
    if stats["last_error"]:
        lines.append(f"  last registration error: {stats['last_error']}")
    return lines


class FleetError(Exception):
    """A worker could not start or died (the message names it)."""


def run_fleet(configs: list[WorkerConfig], *, verbose: int = 0,
              echo: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Run the workers until SIGINT or SIGTERM; return the summed counts."""
    # numpy's BLAS would start a thread per core in every worker and make them fight over
    # the cores for products that take a fraction of a millisecond on one thread.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    meters = sum(c.count for c in configs)
    ctx = multiprocessing.get_context("spawn")
    reports = ctx.Queue()
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    procs = [ctx.Process(target=worker_main, args=(c, reports, n, verbose),
                         name=f"c1222-fleet-{n}", daemon=True)
             for n, c in enumerate(configs)]
    started = time.monotonic()
    stats: dict[int, dict[str, Any]] = {}
    summaries: dict[int, dict[str, Any]] = {}
    try:
        for proc in procs:
            proc.start()
        ready: dict[int, tuple[str, int]] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while len(ready) < len(procs):
            if stopping.is_set():
                return total(stats)
            kind, number, value = _next(reports, procs, deadline)
            if kind == "error":
                raise FleetError(f"worker {number}: {value}")
            if kind == "ready":
                ready[number] = value
        for n, c in enumerate(configs):
            host, port = ready[n]
            echo(f"fleet worker {n} listening on tcp+udp {host}:{port} "
                 f"(meters {c.first}..{c.first + c.count - 1}: {c.title(c.first)} .. "
                 f"{c.title(c.first + c.count - 1)})")
        _watch(procs, reports, stats, summaries, stopping, meters, configs, echo, progress)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the worker stops and sends its summary
        deadline = time.monotonic() + STOP_TIMEOUT
        while len(summaries) < sum(p.pid is not None for p in procs) \
                and time.monotonic() < deadline:
            try:
                kind, number, value = reports.get(timeout=0.2)
            except queues.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if kind in ("summary", "progress"):
                (summaries if kind == "summary" else stats)[number] = value
        for proc in procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result = total({**stats, **summaries})
    for line in summary_lines(result, meters, time.monotonic() - started):
        echo(line)
    return result


def _next(reports: Any, procs: list[Any], deadline: float) -> tuple[str, int, Any]:
    while True:
        try:
            return reports.get(timeout=0.2)  # type: ignore[no-any-return]
        except queues.Empty:
            pass
        for n, proc in enumerate(procs):
            if proc.exitcode is not None:
                raise FleetError(f"worker {n} exited with status {proc.exitcode}")
        if time.monotonic() > deadline:
            raise FleetError(f"the workers did not start within {START_TIMEOUT:.0f} s")


def _watch(procs: list[Any], reports: Any, stats: dict[int, dict[str, Any]],
           summaries: dict[int, dict[str, Any]], stopping: threading.Event, meters: int,
           configs: list[WorkerConfig], echo: Callable[[str], None], show: bool) -> None:
    """Progress until every meter registered, then wait; returns on a stop signal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    started = time.monotonic()
    registering = configs[0].headend is not None or configs[0].relay is not None
    bar = Progress(TextColumn("registering"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[note]}"), console=console,
                   disable=not (show and registering and console.is_terminal))
    done = not registering
    with bar:
        task = bar.add_task("meters", total=meters, note="")
        while not stopping.is_set():
            try:
                kind, number, value = reports.get(timeout=0.2)
            except queues.Empty:
                kind = ""
            if kind == "progress":
                stats[number] = value
            elif kind == "summary":
                summaries[number] = value
            elif kind == "error":
                raise FleetError(f"worker {number}: {value}")
            for n, proc in enumerate(procs):
                if proc.exitcode is not None and n not in summaries:
                    raise FleetError(f"worker {n} exited with status {proc.exitcode}")
            now = total(stats)
            bar.update(task, completed=now["registered"],
                       note=f"{now['registrations_failed']:,} failed attempts"
                       if now["registrations_failed"] else "")
            if not done and now["registered"] >= meters:
                done = True
                bar.stop()
                echo(f"fleet: all {meters:,} meters registered in "
                     f"{time.monotonic() - started:.1f} s")
    if sys.stdout.isatty():
        echo("")
