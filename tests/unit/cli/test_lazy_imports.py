"""`c1222 decode` starts without the servers' stacks: subcommands are imported on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.vectors import IDENT_REQUEST

HEAVY = ("fastapi", "uvicorn", "numpy", "asyncio", "psycopg", "nats", "aiomqtt", "rich",
         "c1222.tables", "c1222.meter", "c1222.headend")

PROBE = """
import sys
from c1222.cli.main import main
try:
    main(["decode", "--json", sys.argv[1]])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print("loaded:", *(m for m in sys.argv[2:] if m in sys.modules))
"""


def _decode_loads(*modules: str) -> str:
    """Which of ``modules`` a `decode --json` of one message imports."""
    src = Path(__file__).resolve().parents[3] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", PROBE, IDENT_REQUEST.hex(), *modules],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith('{"frame":1,')  # it did decode
    return lines[-1]


def test_decode_imports_none_of_the_servers_stacks() -> None:
    assert _decode_loads(*HEAVY) == "loaded:"


def test_decode_without_keys_imports_no_crypto() -> None:
    # `cryptography` and the key table cost 11 ms of a 0.12 s start; no key, no EAX'
    assert _decode_loads("c1222.crypto", "c1222.crypto.keys", "cryptography") == "loaded:"


def test_help_still_lists_every_command() -> None:
    from click.testing import CliRunner

    from c1222.cli.main import _COMMANDS, cli

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in _COMMANDS:
        assert f"  {name} " in result.output
