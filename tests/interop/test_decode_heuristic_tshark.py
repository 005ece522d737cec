"""`c1222 decode` on a capture like the demo's (meter, head-end and display on random ports),
run with no flags, finds every message tshark finds when told the ports
(`-d tcp.port==P,c1222`), and nothing in the HTTP and other traffic beside it."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from c1222.transport.pcap import PcapWriter, read_capture
from tests.e2e.procs import C1222, Running
from tests.interop.tshark import require_tshark, tshark_fields

KEY = ["--key", "2:C1222DE40C1222DE40C1222DE40C1222", "--security-mode", "2"]
#: Messages the meter's trace must hold before the run is stopped (registration, collection
#: reads and the display feed), and the most time given to reach them.
WANTED_MESSAGES, WAIT_SECONDS = 12, 90
NOISE_PORTS = {8080, 5353, 7000, 9999}


def _run_demo_like(out: Path) -> tuple[Path, set[int]]:
    """Head-end, display and meter on port 0, as `c1222 demo` starts them; the meter's trace."""
    pcap = out / "meter.pcap"
    parts: list[Running] = []
    try:
        headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                           "--db", f"sqlite:///{out / 'headend.db'}", "--collect-interval", "1",
                           "--log-interval", "60", *KEY])
        parts.append(headend)
        display = Running(["ihd", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                           "--state-dir", str(out / "display"), *KEY])
        parts.append(display)
        h, d = headend.address(), display.address()
        meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend", f"{h[0]}:{h[1]}",
                         "--ihd", f"{d[0]}:{d[1]}", "--state-dir", str(out / "meter"),
                         "--speed", "60", "--pcap", str(pcap), *KEY])
        parts.append(meter)
        m = meter.address()
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                found = sum(1 for r in read_capture(pcap, ports=(h[1], d[1], m[1])) if r.ok)
            except Exception:  # noqa: BLE001 - the trace is being written: try again
                continue
            if found >= WANTED_MESSAGES:
                break
    finally:
        stopped = [(part.args[0], part.stop(), part.lines[-5:]) for part in reversed(parts)]
    assert all(code == 0 for _, code, _ in stopped), stopped
    return pcap, {h[1], d[1], m[1]}


def _add_other_traffic(pcap: Path) -> None:
    """HTTP to the console, mDNS, and two streams that start like an APDU but are not one."""
    with PcapWriter.open(pcap, append=True, start_time=2_000_000_000.0) as writer:
        http = writer.tcp_connection(("127.0.0.1", 45000), ("127.0.0.1", 8080))
        http.send(b"GET /api/nodes HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        http.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2\r\n\r\n[]", from_client=False)
        http.close()
        writer.udp(("127.0.0.1", 5353), ("224.0.0.251", 5353), b"\x00\x00\x84\x00" + bytes(8))
        writer.udp(("127.0.0.1", 45001), ("127.0.0.1", 9999), b"\x60\x06hello!")
        odd = writer.tcp_connection(("127.0.0.1", 45002), ("127.0.0.1", 7000))
        odd.send(b"\x60\x06hello!" + bytes(64))
        odd.send(b"\x60\x82\xff\xff" + bytes(32), from_client=False)


@pytest.mark.interop
def test_decode_finds_every_message_tshark_finds_on_random_ports(tmp_path: Path) -> None:
    require_tshark()
    pcap, ports = _run_demo_like(tmp_path)
    _add_other_traffic(pcap)
    decoded = subprocess.run([*C1222, "decode", "--json", str(pcap)], capture_output=True,
                             text=True, timeout=300, check=False)
    assert decoded.returncode == 0, decoded.stderr
    ours = [json.loads(line) for line in decoded.stdout.splitlines()]
    assert len(ours) >= WANTED_MESSAGES
    assert not [r for r in ours if "error" in r]
    # no false positive: nothing from the HTTP, mDNS or look-alike traffic
    assert not [r for r in ours
                if {int(r["src"].rsplit(":", 1)[1]), int(r["dst"].rsplit(":", 1)[1])}
                & NOISE_PORTS]
    decode_as = [option for port in sorted(ports) for option in
                 ("-d", f"tcp.port=={port},c1222", "-d", f"udp.port=={port},c1222")]
    rows = tshark_fields(pcap, ["c1222.calling_AP_invocation_id"], display_filter="c1222",
                         extra_options=decode_as)
    theirs = Counter((int(row["frame.number"][0]), int(v))
                     for row in rows for v in row["c1222.calling_AP_invocation_id"])
    assert Counter((r["frame"], r["calling_ap_invocation_id"]) for r in ours) == theirs
    # and the one-line view shows the same messages, one line each
    brief = subprocess.run([*C1222, "decode", str(pcap)], capture_output=True, text=True,
                           timeout=300, check=False)
    assert brief.returncode == 0 and len(brief.stdout.splitlines()) == len(ours)
