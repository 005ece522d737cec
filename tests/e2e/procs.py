"""Start `c1222` commands as a user would (subprocesses) and read the address they print."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

C1222 = [sys.executable, "-m", "c1222.cli"]
ADDRESS = re.compile(r"(?:listening on tcp\+udp|http) (\S+):(\d+)")
_STARTED: list[subprocess.Popen[str]] = []


@atexit.register
def _kill_survivors() -> None:
    """A test that failed before stopping its processes leaves none running once pytest exits
    (they held ports and a share of the CPU for whatever ran next)."""
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()


class Running:
    """A running command; its output lines are collected in the background."""

    def __init__(self, args: Sequence[str], *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            C1222 + self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        _STARTED[:] = [p for p in _STARTED if p.poll() is None] + [self.proc]
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                found = regex.search(line)
                if found:
                    return found
            seen = len(self.lines)
            if self.proc.poll() is not None and seen == len(self.lines):
                time.sleep(0.1)
                if not any(regex.search(x) for x in self.lines):
                    raise AssertionError(f"{self.args} exited {self.proc.returncode}:\n"
                                         + "\n".join(self.lines))
            time.sleep(0.05)
        raise AssertionError(f"no {regex.pattern!r} from {self.args} in {timeout} s:\n"
                             + "\n".join(self.lines))

    def address(self, timeout: float = 30.0) -> tuple[str, int]:
        found = self.wait_for(ADDRESS, timeout)
        return found.group(1), int(found.group(2))

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C, as a user stops it; kill only if it does not stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.args} did not stop on SIGINT:\n"
                                     + "\n".join(self.lines)) from None
        self._reader.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: no chance to save anything. The processes it had started (the head-end's
        decoders) must end soon after it: none is left behind (c1222.workers)."""
        started = children(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        self._reader.join(5)
        deadline = time.monotonic() + 15
        while left := [pid for pid in started if alive(pid)]:
            if time.monotonic() > deadline:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"{self.args}: processes {left} outlived it by 15 s")
            time.sleep(0.1)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, whichever of its threads started them (Linux
    /proc; none found elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie has ended)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
