"""`c1222 samples` writes a capture of every service and decodes it."""

from __future__ import annotations

import json
import subprocess
import sys

from c1222.codec import samples


def test_samples_writes_a_capture_of_every_service_and_decodes_it(tmp_path):
    out = subprocess.run([sys.executable, "-m", "c1222.cli", "samples", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "44 messages written" in out.stdout
    assert "error" not in out.stdout
    decoded = subprocess.run(
        [sys.executable, "-m", "c1222.cli", "decode", "--json", str(tmp_path / "c1222-samples.pcap")],
        capture_output=True, text=True, timeout=120, check=True)
    records = [json.loads(line) for line in decoded.stdout.splitlines()]
    assert len(records) == len(samples.messages())
    services = {s["service"] for r in records for s in r["services"] if "code" in s}
    assert services >= {"identify", "full_read", "partial_read_index", "partial_read_offset",
                        "full_write", "partial_write_index", "partial_write_offset", "logon",
                        "security", "logoff", "terminate", "disconnect", "wait", "register",
                        "deregister", "resolve", "trace"}
