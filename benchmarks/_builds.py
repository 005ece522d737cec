"""The two builds a benchmark compares side by side: the package as `make` built it (compiled
with mypyc, setup.py) and a pure-Python copy of it (what a plain `pip install` gives)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pure_src(into: Path) -> Path:
    """A copy of src/ without its extensions, for PYTHONPATH: the pure-Python package."""
    src = into / "pure-src"
    if not src.exists():
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return src


def env_for(src: Path) -> dict[str, str]:
    """The environment of a subprocess that imports c1222 from ``src``."""
    return {**os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1"}
