"""Every stored crasher, replayed through its target's plain function (no atheris).

tests/fuzz/crashers/TARGET/NAME holds the input that once broke target TARGET
(docs/fuzzing.md); the target must now keep its contract on it. encode_cli/ holds JSON
lines that break `c1222 encode` itself (its per-line handling in cli/codec.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from c1222.cli.main import cli
from c1222.codec import text
from tests.fuzz.targets import TARGETS

CRASHERS = Path(__file__).resolve().parent / "crashers"
VECTORS = sorted(p for p in CRASHERS.glob("*/*") if p.parent.name in TARGETS)


def test_every_vector_names_a_target() -> None:
    folders = {p.name for p in CRASHERS.iterdir() if p.is_dir()}
    assert folders <= set(TARGETS) | {"encode_cli"}
    assert VECTORS


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", VECTORS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_vector_keeps_the_contract(path: Path) -> None:
    TARGETS[path.parent.name].run(path.read_bytes())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", sorted((CRASHERS / "encode_cli").glob("*")),
                         ids=lambda p: p.name)
def test_encode_cli_reports_the_line(path: Path) -> None:
    """`c1222 encode` names a bad line and goes on; it never dies with a traceback."""
    line = path.read_text(encoding="ascii")
    good = {"calling_ap_invocation_id": 1}
    result = CliRunner().invoke(cli, ["encode"], input=line + json.dumps(good) + "\n")
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}")
    assert result.exit_code == 1
    assert "line 1:" in result.stderr
    assert text.from_json(good).encode().hex() in result.stdout  # the next line still encoded
