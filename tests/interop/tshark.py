"""Ask tshark, the independent judge, what it sees in a capture (digest 11).

Import as ``from tests.interop.tshark import tshark_fields`` (``tests`` and
``tests/interop`` are packages, so pytest's default import mode puts the
repository root on ``sys.path``).

Every run uses a private, empty Wireshark configuration directory and ``-n``,
so a developer's preferences or name resolution never change the verdict, and
always sets the C12.22 base OID so relative AP titles are shown (and can be
used for EAX' decryption).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

#: Base OID for relative AP titles (digest 1.4, 11).
BASE_OID = "2.16.124.113620.1.22.0"
#: The ``_ws.expert.severity`` value of an error (Wireshark's PI_ERROR).
EXPERT_ERROR = 0x00800000
#: Seconds before a tshark run is declared hung.
TIMEOUT = 600

#: Where the captures made by others live: ../shared/captures from the repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]
CAPTURES_DIR = REPO_ROOT.parent / "shared" / "captures"


class TsharkError(RuntimeError):
    """tshark refused to run (bad option, bad display filter, unreadable file)."""


def _missing(reason: str) -> None:
    """Skip a test for a missing tool or data, or fail when everything is required (CI)."""
    if os.environ.get("C1222_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (C1222_REQUIRE_ALL=1 requires it)", pytrace=False)
    pytest.skip(reason)


def require_tshark() -> str:
    """Path of the tshark executable; skips (or fails under C1222_REQUIRE_ALL=1) without it."""
    path = shutil.which("tshark")
    if path is None:
        _missing("tshark is not installed (Debian: apt-get install tshark; `make test` does it)")
    assert path is not None
    return path


def require_captures() -> Path:
    """The ../shared/captures directory; skips (or fails under C1222_REQUIRE_ALL=1) without it."""
    if not CAPTURES_DIR.is_dir():
        _missing(f"the captures made by others are not at {CAPTURES_DIR}")
    return CAPTURES_DIR


def key_options(keys: Mapping[int, bytes] | None) -> list[str]:
    """The ``-o`` options of digest 11: the base OID always, decryption with each key."""
    options = ["-o", f"c1222.baseoid:{BASE_OID}"]
    if keys:
        options += ["-o", "c1222.decrypt:TRUE"]
        for key_id, key in keys.items():
            if not 0 <= key_id <= 0xFF or len(key) != 16:
                raise ValueError(f"key id {key_id} / key of {len(key)} bytes: not a C12.22 key")
            # The key id is read as hexadecimal; the key is 32 hex digits, unquoted.
            options += ["-o", f'uat:c1222_decryption_table:"{key_id:02X}",{key.hex()}']
    return options


def run_tshark(pcap_path: str | os.PathLike[str], options: Sequence[str]) -> str:
    """Run tshark on a capture with a private configuration; return its standard output."""
    exe = require_tshark()
    with tempfile.TemporaryDirectory(prefix="c1222-tshark-") as home:
        env = {**os.environ, "HOME": home, "WIRESHARK_CONFIG_DIR": home,
               "XDG_CONFIG_HOME": home, "LC_ALL": "C.UTF-8"}
        proc = subprocess.run(
            [exe, "-n", "-r", os.fspath(pcap_path), *options],
            capture_output=True, env=env, timeout=TIMEOUT, check=False)
    if proc.returncode != 0:
        raise TsharkError(f"tshark {' '.join(options)} exited {proc.returncode}: "
                          f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode("utf-8", errors="replace")


def tshark_fields(
    pcap_path: str | os.PathLike[str],
    fields: Sequence[str],
    *,
    keys: Mapping[int, bytes] | None = None,
    display_filter: str | None = None,
    extra_options: Sequence[str] = (),
) -> list[dict[str, list[str]]]:
    """One dict per frame that passes ``display_filter``: each field's values, in order.

    ``frame.number`` is always included. A field absent from a frame maps to an
    empty list; a field that occurs several times (several APDUs in one frame,
    several services in one APDU) has several values. The JSON output is used
    because it keeps every occurrence and needs no separator that a value could hold.
    """
    wanted = ["frame.number", *(f for f in fields if f != "frame.number")]
    options = [*key_options(keys), "-T", "json"]
    for name in wanted:
        options += ["-e", name]
    if display_filter:
        options += ["-Y", display_filter]
    options += list(extra_options)
    text = run_tshark(pcap_path, options).strip()
    packets = json.loads(text) if text else []
    rows = []
    for packet in packets:
        layers = packet["_source"]["layers"]
        rows.append({name: [str(v) for v in layers.get(name, [])] for name in wanted})
    return rows


def tshark_verbose(pcap_path: str | os.PathLike[str],
                   keys: Mapping[int, bytes] | None = None) -> str:
    """The ``-V`` text: every frame's full protocol tree."""
    return run_tshark(pcap_path, [*key_options(keys), "-V"])


def c1222_frames(pcap_path: str | os.PathLike[str]) -> list[int]:
    """Numbers of the frames tshark dissects as C12.22 (``-Y c1222``)."""
    rows = tshark_fields(pcap_path, [], display_filter="c1222")
    return [int(row["frame.number"][0]) for row in rows]


def malformed_or_expert(pcap_path: str | os.PathLike[str],
                        keys: Mapping[int, bytes] | None = None,
                        ) -> list[dict[str, list[str]]]:
    """Frames that tshark finds malformed or flags with an expert error, with its messages."""
    rows = tshark_fields(
        pcap_path, ["_ws.malformed", "_ws.expert.severity", "_ws.expert.message"],
        keys=keys, display_filter=f"_ws.malformed or _ws.expert.severity >= {EXPERT_ERROR}")
    return [row for row in rows
            if row["_ws.malformed"]
            or any(int(s, 0) >= EXPERT_ERROR for s in row["_ws.expert.severity"])]
