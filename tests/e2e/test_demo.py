"""`make demo` as the README says: it starts head-end, master relay, relay, meter and display; the
display shows live values, the console lists the meter (reached through the relays), and Ctrl-C
stops all of them."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from c1222.cli import demo
from tests.auth import anonymous

REPO = Path(__file__).resolve().parents[2]
DISPLAY = re.compile(r"In-home display:\s+(http://\S+)")
CONSOLE = re.compile(r"Head-end console:\s+(http://\S+)")


def test_make_demo_runs_the_whole_system_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    assert shutil.which("make"), "make is needed: the README's first command"
    args = f"--out {tmp_path} --display-http 127.0.0.1:0 --console-http 127.0.0.1:0"
    proc = subprocess.Popen(["make", "--no-print-directory", "demo", f"DEMO_ARGS={args}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(
        line.rstrip("\n") for line in proc.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        display = console = None
        deadline = time.monotonic() + 120
        while display is None or console is None:
            assert time.monotonic() < deadline and proc.poll() is None, "\n".join(lines)
            for line in list(lines):
                display = display or (m.group(1) if (m := DISPLAY.search(line)) else None)
                console = console or (m.group(1) if (m := CONSOLE.search(line)) else None)
            time.sleep(0.2)
        # the display shows live values, fed by the meter every second
        seen: list[dict] = []
        deadline = time.monotonic() + 60
        while len({s["sample"]["time"] for s in seen if s.get("sample")}) < 3:
            assert time.monotonic() < deadline, f"no live values: {seen[-1:]}\n" + \
                "\n".join(lines)
            live = httpx.get(f"{display}api/live", timeout=5).json()
            if live.get("sample") and not live.get("stale"):
                seen.append(live)
            time.sleep(0.5)
        sample = seen[-1]["sample"]
        assert 200 < sample["voltage"] < 240 and sample["energy_wh"] >= 0
        # the head-end learnt the meter from the master relay (a secured registration through
        # the relay, mode 2) and read its present values through both relays by title
        deadline = time.monotonic() + 60
        while not _read_via_master(httpx.get(f"{console}api/nodes", timeout=5).json()):
            assert time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole group
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("make demo did not stop on Ctrl-C:\n" + "\n".join(lines))
        reader.join(5)
    assert any("demo stopped" in line for line in lines), "\n".join(lines)
    assert (tmp_path / "meter.pcap").stat().st_size > 0
    leftovers = subprocess.run(["pgrep", "-f", f"c1222.cli .*{tmp_path}"],
                               capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "parts of the demo still running"


def _read_via_master(nodes: list[dict]) -> bool:
    """The demo's meter is at the head-end, reached via the master relay, and has been read."""
    return any(n["ap_title"] == demo.METER_TITLE and n["via"] == demo.MASTER_RELAY_TITLE
               and n["latest"] for n in nodes)


def _demo(out: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "c1222.cli", "demo", "--out", str(out),
                             "--console-http", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(
        line.rstrip("\n") for line in proc.stdout), daemon=True).start()  # type: ignore[union-attr]
    return proc, lines


def _wait(proc: subprocess.Popen[str], lines: list[str], pattern: str,
          timeout: float = 120) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            if found := re.search(pattern, line):
                return found
        if proc.poll() is not None:
            time.sleep(0.5)  # the reader may hold the last lines
            for line in list(lines):
                if found := re.search(pattern, line):
                    return found
            break
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r}:\n" + "\n".join(lines))


def _parts(out: Path) -> list[int]:
    """Process ids of the demo's parts (their command lines name the --out folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"c1222.cli" in cmdline and any(str(out).encode() in a for a in cmdline) \
                and b"demo" not in cmdline:
            found.append(int(entry.name))
    return found


def _kill(proc: subprocess.Popen[str], out: Path) -> None:
    """A demo that did not stop, and its parts (in sessions of their own): the next test must
    not find them."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pid in _parts(out):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _part(out: Path, name: str) -> int:
    for pid in _parts(out):
        if name.encode() in (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0"):
            return pid
    raise AssertionError(f"no {name} process")


def test_demo_says_a_busy_port_was_replaced_and_names_the_part_that_stopped(
        tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, lines = _demo(tmp_path, "--display-http", f"127.0.0.1:{port}")
        try:
            moved = _wait(proc, lines, rf"^port {port} is taken; the display is on (\d+)$")
            page = _wait(proc, lines, r"In-home display:\s+http://127\.0\.0\.1:(\d+)/")
            assert moved.group(1) == page.group(1) != str(port)
            os.kill(_part(tmp_path, "meter"), signal.SIGKILL)
            proc.wait(60)
        finally:
            parts_left = _parts(tmp_path)
            _kill(proc, tmp_path)
    assert proc.returncode == 1, lines
    _wait(proc, lines, r"^c1222 demo: error: meter was killed by signal 9; the demo stopped$")
    assert not parts_left, "parts of the demo still running"


def test_demo_names_a_part_that_fails_to_start_with_its_error_line(tmp_path: Path) -> None:
    (tmp_path / "meter.pcap").mkdir()  # the meter refuses a capture file that is a folder
    proc, lines = _demo(tmp_path, "--display-http", "127.0.0.1:0")
    try:
        proc.wait(120)
    finally:
        parts_left = _parts(tmp_path)
        _kill(proc, tmp_path)
    assert proc.returncode == 1, lines
    _wait(proc, lines, r"^c1222 demo: error: meter exited with status 2: c1222 meter: error: "
                       r"Invalid value for '--pcap': '.*meter\.pcap' is a directory$")
    assert not any("Traceback" in line for line in lines), lines
    assert not parts_left, "the head-end and the display were not stopped"


def test_demo_prints_the_console_credentials_and_they_sign_in(tmp_path: Path) -> None:
    """A fresh password on every run (the demo's database keeps its accounts)."""
    seen = []
    for _ in range(2):
        proc, lines = _demo(tmp_path, "--display-http", "127.0.0.1:0")
        try:
            found = _wait(proc, lines, r"Head-end console:\s+(http://\S+)\s+"
                                       r"\(sign in as (\S+), password (\S+)\)")
            console, user, password = found.groups()
            with anonymous(base_url=console, timeout=10) as client:
                assert client.get("api/nodes").status_code == 401
                assert client.post("api/login", json={"username": user, "password": password}
                                   ).status_code == 200
                assert client.get("api/nodes").status_code == 200
            seen.append(password)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(45)
            finally:
                _kill(proc, tmp_path)
    assert seen[0] != seen[1]
