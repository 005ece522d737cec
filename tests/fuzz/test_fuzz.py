"""Each fuzz target runs under atheris for a short time box; a crash fails the test.

The time per target is ``C1222_FUZZ_SECONDS`` (default 10; the 10 targets take about two
minutes on an idle 2-core machine). The seed is fixed, so a run is repeatable on one machine
(libFuzzer's scheduling still depends on speed). The failure message carries the Python
traceback and the crashing input in hex; once the decoder is fixed, store that input under
tests/fuzz/crashers/TARGET/ (docs/fuzzing.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.corpus import capture_files
from tests.fuzz.targets import TARGETS

pytest.importorskip("atheris", reason="atheris is in the test extra (pip install atheris)")

RUN = Path(__file__).resolve().parent / "run.py"
SECONDS = int(os.environ.get("C1222_FUZZ_SECONDS", "10"))


def test_captures_seed_the_corpus() -> None:
    if not capture_files():
        message = "../shared/captures is missing: the fuzzers run on the samples alone"
        if os.environ.get("C1222_REQUIRE_ALL") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.slow
@pytest.mark.timeout(SECONDS * 4 + 120)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_survives_time_box(name: str, tmp_path: Path) -> None:
    cmd = [sys.executable, str(RUN), name, f"-max_total_time={SECONDS}", "-seed=1",
           "-timeout=20", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/",
           "-print_final_stats=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                          timeout=SECONDS * 4 + 100, cwd=tmp_path)
    log = proc.stderr
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*")) \
        + sorted(tmp_path.glob("oom-*"))
    if proc.returncode != 0 or crashes:
        start = max(log.find("=== Uncaught Python exception"), log.find("ERROR: libFuzzer"), 0)
        report = log[start : start + 4000]
        inputs = "\n".join(f"{p.name}: {p.read_bytes()[:2048].hex()}" for p in crashes)
        pytest.fail(f"fuzz target {name} broke its contract (exit {proc.returncode})\n"
                    f"{report}\n{inputs}", pytrace=False)
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    assert runs and int(runs.group(1)) > 0, log[-2000:]
