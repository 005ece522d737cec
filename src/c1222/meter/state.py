"""What a meter keeps across a restart or a kill -9: energy registers, load profile, event log.

One JSON file, replaced atomically (write a temporary file, fsync it, rename it over the old
one, fsync the directory), so a crash at any instant leaves either the previous state or the
new one, never a torn mix. The tables are kept as their bytes (hex), exactly as served.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from c1222.errors import ConfigurationError

STATE_FILE = "meter-state.json"
VERSION = 1
#: The tables whose contents outlive the process (status, registers, load profile, history).
PERSISTED_TABLES = (3, 23, 63, 64, 74)


def save(state_dir: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically with ``state`` (plus its version)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = state_dir / (STATE_FILE + ".tmp")
    data = json.dumps({"version": VERSION, **state}, separators=(",", ":")).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(state_dir: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none. A file that does not parse is a
    ConfigurationError naming it (the operator decides; it is never silently discarded)."""
    path = state_dir / STATE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc.strerror}") from None
    try:
        state = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{path}: not a meter state file ({exc})") from None
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise ConfigurationError(f"{path}: unknown state version")
    return state
