"""What compiled modules (setup.py's COMPILED list) need from mypyc when they run interpreted.

``mypyc_attr`` is read by mypyc when it compiles a module; interpreted, it does nothing. It comes
from ``mypy_extensions`` (installed with mypy); without mypy the stand-in below keeps the
package importable as pure Python.
"""

from __future__ import annotations

from typing import Any

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # pure Python without mypy: nothing reads the attributes

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Any:  # type: ignore[no-redef,misc]
        return lambda cls: cls


__all__ = ["mypyc_attr"]
