"""Shared by the benchmarks: describe the machine, write a section of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nFigures measured by the scripts in benchmarks/; each section is rewritten by its script.\n"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from c1222 import build

    return (f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; c1222 {build.describe()}.")


def write_section(title: str, lines: list[str]) -> None:
    """Replace (or add) the ``## title`` section of BENCHMARKS.md, keeping the others."""
    text = REPORT.read_text() if REPORT.exists() else HEADER
    body = f"## {title}\n\n" + "\n".join(lines).rstrip() + "\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + body
    REPORT.write_text(text)
