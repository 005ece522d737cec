"""`make demo` as the README says: it starts meter, head-end and display, the display shows live
values, the console lists the meter, and Ctrl-C stops all of them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

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
        # the head-end has the meter registered (secured registration, mode 2)
        deadline = time.monotonic() + 30
        while not httpx.get(f"{console}api/nodes", timeout=5).json():
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
