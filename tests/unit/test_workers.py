"""Worker processes end with the process that started them (c1222.workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.procs import alive

SRC = Path(__file__).resolve().parents[2] / "src"

# A parent that starts one worker, the way the head-end starts its decoders (a spawned
# ProcessPoolExecutor with exit_with_parent as initializer), prints the worker's pid and waits.
PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from c1222.workers import exit_with_parent

if __name__ == "__main__":
    with_watch = sys.argv[1] == "watch"
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent if with_watch else None)
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(600)
"""


def _orphan_after_kill_9(tmp_path: Path, mode: str) -> int:
    """Start the parent, kill -9 it once its worker runs; the worker's pid."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    return worker


def test_a_worker_ends_soon_after_its_parent_is_killed(tmp_path: Path) -> None:
    worker = _orphan_after_kill_9(tmp_path, "watch")
    deadline = time.monotonic() + 15
    while alive(worker):
        assert time.monotonic() < deadline, f"worker {worker} outlived its parent by 15 s"
        time.sleep(0.1)


def test_without_it_the_worker_outlives_its_parent(tmp_path: Path) -> None:
    # What the watch is for: an idle spawned worker of a killed parent waits for ever.
    worker = _orphan_after_kill_9(tmp_path, "none")
    try:
        time.sleep(3)
        assert alive(worker)
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)
