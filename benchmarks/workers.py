"""`c1222 headend` with 1 and with 2 workers (`--workers 2`) reading the same fleet, flat out.

For each worker count: a fresh PostgreSQL schema, `c1222 headend` (1: the plain command; 2:
`--workers 2`) with `--collect-interval 0.1` (every meter is due again as soon as its read
ends: the collector is saturated, so reads/s is the head-end's capacity on this machine, not
the interval's demand), load profile and event log off, and `c1222 fleet --meters N` (one
process). Once every meter has been read, reads are counted for ``--seconds`` from the
workers' /metrics (``c1222_headend_reads_total``, summed over workers) and CPU from /proc
(the supervisor and every worker; the fleet apart). The plain asyncio echo floor of the same
run (benchmarks/meter.py's echo server, 8 connections) follows, as benchmarks/fleet.py has it.

    .venv/bin/python benchmarks/workers.py [--meters 1000] [--seconds 30]
                                           [--db postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402
from fleet import cpu_seconds, echo_floor  # noqa: E402
import _metrics  # noqa: E402

C1222 = [sys.executable, "-m", "c1222.cli"]
CONSOLE = re.compile(r"console at http (\S+:\d+)")
OK = re.compile(r'^c1222_headend_reads_total\{code="",outcome="ok"\} (\S+)', re.M)
FAILED = re.compile(r'^c1222_headend_reads_total\{code="[^"]*",outcome="(?!ok")[^"]*"\} (\S+)',
                    re.M)


class Proc:
    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(C1222 + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"no {pattern!r} from {self.proc.args}:\n" + "\n".join(self.lines[-20:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            todo += [int(c) for c in
                     Path(f"/proc/{current}/task/{current}/children").read_text().split()]
        except OSError:
            pass
    return out


def reads(consoles: list[str]) -> tuple[float, float]:
    ok = failed = 0.0
    for console in consoles:
        text = _metrics.get(f"http://{console}/metrics", timeout=30).decode()
        ok += sum(float(v) for v in OK.findall(text))
        failed += sum(float(v) for v in FAILED.findall(text))
    return ok, failed


def run(workers: int, meters: int, seconds: float, base: str) -> dict[str, float]:
    schema = f"c1222_bench_{uuid.uuid4().hex[:8]}"
    args = ["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
            "--db", f"{base}?schema={schema}", "--collect-interval", "0.1",
            "--log-interval", "0", "--max-connections", str(meters + 100),
            "--max-connections-per-address", str(meters + 100),
            "--max-registrations-per-address", "0"]
    headend = Proc(args + (["--workers", str(workers)] if workers > 1 else []))
    fleet = None
    try:
        found = headend.wait_for(r"listening on tcp\+udp (\S+):(\d+)", 120)
        headend.wait_for(r"console at http", 30)
        time.sleep(0.5)  # the per-worker lines follow the first console line
        consoles = [m.group(1) for line in headend.lines if (m := CONSOLE.search(line))
                    and ("worker" in line or workers == 1)]
        consoles = sorted(set(consoles))
        fleet = Proc(["fleet", "--meters", str(meters), "--headend",
                      f"{found.group(1)}:{found.group(2)}", "--ramp", "0"])
        fleet.wait_for(rf"all {meters:,} meters registered|all {meters} meters registered", 300)
        deadline = time.monotonic() + 120
        while reads(consoles)[0] < meters and time.monotonic() < deadline:
            time.sleep(1)  # every meter read once: context tables cached, links open
        pids = descendants(headend.proc.pid)
        fleet_pids = descendants(fleet.proc.pid)
        ok0, failed0 = reads(consoles)
        cpu0 = sum(cpu_seconds(p) for p in pids)
        fleet_cpu0 = sum(cpu_seconds(p) for p in fleet_pids)
        start = time.monotonic()
        time.sleep(seconds)
        ok1, failed1 = reads(consoles)
        cpu1 = sum(cpu_seconds(p) for p in pids)
        fleet_cpu1 = sum(cpu_seconds(p) for p in fleet_pids)
        elapsed = time.monotonic() - start
        done = ok1 - ok0
        return {"workers": workers, "reads_s": done / elapsed,
                "failed": failed1 - failed0,
                "cpu_ms": (cpu1 - cpu0) / max(done, 1) * 1000,
                "fleet_cpu_ms": (fleet_cpu1 - fleet_cpu0) / max(done, 1) * 1000,
                "cpu_share": (cpu1 - cpu0) / elapsed}
    finally:
        if fleet is not None:
            fleet.stop()
        headend.stop()
        import psycopg

        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--db", default=os.environ.get(
        "C1222_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = [run(w, args.meters, args.seconds, args.db) for w in (1, 2)]
    echo = echo_floor()
    lines = [machine(), "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
             f"{load:.1f} at the start and {os.getloadavg()[0]:.1f} at the end (the machine is "
             "shared with other work); PostgreSQL on the same machine; "
             f"{args.meters:,} meters (`c1222 fleet`, one process) read flat out "
             f"(`--collect-interval 0.1`) for {args.seconds:.0f} s.", "",
             "| head-end | reads/s | failed | head-end CPU per read | head-end CPU "
             "(cores) | fleet CPU per read |",
             "|---|---|---|---|---|---|"]
    for r in results:
        name = "`c1222 headend`" if r["workers"] == 1 else \
            f"`c1222 headend --workers {r['workers']:.0f}`"
        lines.append(f"| {name} | {r['reads_s']:,.0f} | {r['failed']:.0f} | "
                     f"{r['cpu_ms']:.1f} ms | {r['cpu_share']:.2f} | "
                     f"{r['fleet_cpu_ms']:.1f} ms |")
    lines += ["", f"Echo floor, same run: a plain asyncio echo server answers {echo[0]:,.0f} "
              f"requests/s at 8 connections (p50 {echo[1]:.2f} ms, p99 {echo[2]:.2f} ms). A "
              "read is 4 request-response exchanges (Security and 3 table reads) plus its "
              "store in PostgreSQL.", "",
              "Read it with the head-end CPU column: a worker count helps only while the "
              "head-end is CPU-bound and a core is free for the second worker; with a load "
              "average above the 2 cores the head-end gets a fraction of a core either way, "
              "and one process's storage calls (one PostgreSQL connection, each reading "
              "committed before it is acknowledged) bound it before its CPU does.", ""]
    print("\n".join(lines))
    if not args.no_write:
        write_section("Head-end workers: 1 and 2 processes (benchmarks/workers.py)", lines)


if __name__ == "__main__":
    main()
