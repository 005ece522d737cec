"""tshark judges a `c1222 demo` capture: every secured message the meter sent or received
(display feed and its answers, registration, head-end reads) is "Crypto good" with the demo
key. Before the feed carried a called AP title, every meter-to-display message was "Crypto bad"
while `c1222 decode` said the MAC verified."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from c1222.cli.demo import DEMO_KEY
from c1222.codec import acse
from c1222.errors import DecodeError
from c1222.transport.pcap import read_capture
from tests.interop.tshark import require_tshark, tshark_fields

LISTENING = re.compile(r"\[([\w-]+)\] .*listening on tcp\+udp (\S+):(\d+)")


def _count(pcap: Path) -> int:
    count = 0
    try:
        for _ in read_capture(pcap, ports=None):
            count += 1
    except (OSError, DecodeError):  # not there yet, or ends inside the record being written
        pass
    return count


@pytest.mark.interop
def test_tshark_verifies_every_secured_message_of_a_demo_capture(tmp_path: Path) -> None:
    require_tshark()
    proc = subprocess.Popen(
        [sys.executable, "-m", "c1222.cli", "demo", "--out", str(tmp_path),
         "--display-http", "127.0.0.1:0", "--console-http", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(
        line.rstrip("\n") for line in proc.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()
    pcap = tmp_path / "meter.pcap"
    try:
        deadline = time.monotonic() + 90
        while _count(pcap) < 30:  # the feed once a second, registration, head-end reads
            assert time.monotonic() < deadline and proc.poll() is None, "\n".join(lines)
            time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the demo did not stop:\n" + "\n".join(lines)) from None
        reader.join(5)
    ports = {int(m.group(3)) for line in lines if (m := LISTENING.search(line))}
    assert len(ports) == 5, lines  # master relay, head-end, display, relay, meter
    decode_as = [o for port in sorted(ports) for o in
                 ("-d", f"tcp.port=={port},c1222", "-d", f"udp.port=={port},c1222")]
    key = {int(DEMO_KEY.split(":")[0]): bytes.fromhex(DEMO_KEY.split(":")[1])}
    rows = {int(r["frame.number"][0]): r for r in tshark_fields(
        pcap, ["c1222.crypto_good", "c1222.crypto_bad"], keys=key, display_filter="c1222",
        extra_options=decode_as)}
    captured = [c for c in read_capture(pcap, ports=ports) if c.ok]
    secured = [c for c in captured if acse.decode(c.data).epsem.security_mode]
    assert len(secured) >= 30
    bad = [(c.frame, c.src, c.dst, rows.get(c.frame)) for c in secured
           if rows.get(c.frame, {}).get("c1222.crypto_good") != ["1"]]
    assert not bad, f"{len(bad)} of {len(secured)} secured messages not Crypto good: {bad[:5]}"
