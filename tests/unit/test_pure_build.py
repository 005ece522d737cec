"""The pure-Python package, beside the compiled one the suite runs on.

`make` builds the hot modules with mypyc (setup.py); a plain `pip install` gives pure Python.
Both must behave the same, so the codec, crypto, session, table and meter tests, the golden
captures and the property tests run here once more on a copy of the package without its
extensions.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from c1222 import build

ROOT = Path(__file__).resolve().parents[2]
SUITES = ["tests/unit/codec", "tests/unit/crypto", "tests/unit/session", "tests/unit/tables",
          "tests/unit/meter", "tests/golden", "tests/property"]


@pytest.mark.slow
def test_the_pure_python_package_passes_the_codec_crypto_and_session_tests(tmp_path):
    if not build.compiled():
        pytest.skip("this run is on the pure-Python package already")
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "c1222", src / "c1222",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    which = subprocess.run(
        [sys.executable, "-c", "import c1222.codec.ber as m, c1222.build as b; "
         "print(m.__file__); print(b.describe())"],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT).stdout.split("\n")
    assert which[0] == str(src / "c1222" / "codec" / "ber.py") and which[1] == "pure Python"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-x", *SUITES], env=env, capture_output=True, text=True, cwd=ROOT,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
