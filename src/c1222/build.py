"""Which of the package's modules run compiled (mypyc C extensions, setup.py) and which of
those extensions are older than their source.

Python imports an extension before the ``.py`` of the same name, so a module edited after
``make compile`` would silently run its old code: the tests refuse to start then
(tests/conftest.py), and the benchmarks print which build they measured.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _extensions(package: Path = _PACKAGE) -> dict[str, Path]:
    """Dotted module name -> its extension file, for every extension inside ``package``."""
    found: dict[str, Path] = {}
    for path in package.rglob("*.so"):
        # the most specific suffix first: ".cpython-311-x86_64-linux-gnu.so" before ".so"
        suffix = next((s for s in importlib.machinery.EXTENSION_SUFFIXES
                       if path.name.endswith(s)), None)
        if suffix is not None:
            parts = path.relative_to(package.parent).with_name(
                path.name.removesuffix(suffix)).parts
            found[".".join(parts)] = path
    return found


def compiled(package: Path = _PACKAGE) -> list[str]:
    """The package's modules that have an extension beside them, sorted."""
    return sorted(_extensions(package))


def stale(package: Path = _PACKAGE) -> list[str]:
    """Compiled modules whose ``.py`` changed after their extension was built."""
    out = []
    for name, ext in _extensions(package).items():
        source = ext.with_name(name.rsplit(".", 1)[-1] + ".py")
        if source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
            out.append(name)
    return sorted(out)


def describe() -> str:
    """One line for reports: which build this is."""
    names = compiled()
    if not names:
        return "pure Python"
    return f"compiled with mypyc ({len(names)} modules)"
