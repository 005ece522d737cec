"""tshark and c1222.transport.pcap.read_capture must find the same APDUs in the same frames."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from c1222.transport.pcap import CapturedApdu, PcapWriter, read_capture
from tests.interop.tshark import CAPTURES_DIR, tshark_fields
from tests.vectors import EX8_REQUEST, EX8_RESPONSE, READ_REQUEST

pytestmark = pytest.mark.interop

FIELDS = ["c1222.MESSAGE_element", "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src",
          "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"]

SHARED = (sorted(p.name for p in CAPTURES_DIR.iterdir() if p.suffix in (".pcap", ".cap"))
          if CAPTURES_DIR.is_dir() else ["(captures missing)"])


def _endpoint(row: dict[str, list[str]], side: str) -> str:
    """"ip:port" from tshark's fields, as the reader spells it (last IP header: tunnels)."""
    port = (row[f"tcp.{side}port"] or row[f"udp.{side}port"])[-1]
    if row[f"ipv6.{side}"]:
        return f"[{row[f'ipv6.{side}'][-1]}]:{port}"
    return f"{row[f'ip.{side}'][-1]}:{port}"


def assert_same_as_tshark(path: Path, records: list[CapturedApdu],
                          extra_options: tuple[str, ...] = ()) -> None:
    rows = tshark_fields(path, FIELDS, display_filter="c1222", extra_options=extra_options)
    assert rows, "tshark found no C12.22 at all"
    ours = [r for r in records if r.error is None]
    assert sorted({r.frame for r in ours}) == [int(row["frame.number"][0]) for row in rows]
    per_frame = Counter(r.frame for r in ours)
    by_frame = {r.frame: r for r in ours}
    for row in rows:
        frame = int(row["frame.number"][0])
        assert per_frame[frame] == len(row["c1222.MESSAGE_element"]), f"frame {frame}"
        record = by_frame[frame]
        assert record.src == _endpoint(row, "src"), f"frame {frame}"
        assert record.dst == _endpoint(row, "dst"), f"frame {frame}"
        assert record.time == pytest.approx(float(row["frame.time_epoch"][0]), abs=2e-6)


@pytest.mark.parametrize("name", SHARED)
def test_shared_capture_frames_match_tshark(tshark: str, captures_dir: Path, name: str) -> None:
    path = captures_dir / name
    records = list(read_capture(path))
    assert all(r.error is None for r in records)
    assert_same_as_tshark(path, records)




def test_reassembly_matches_tshark(tshark: str, tmp_path: Path) -> None:
    """Splits, several APDUs per segment, sequence wrap, IPv6 and UDP: the same frames."""
    path = tmp_path / "mixed.pcap"
    with PcapWriter.open(path, start_time=1_700_000_000.0) as w:
        a = w.tcp_connection(("10.0.0.1", 40000), ("10.0.0.2", 1153), client_isn=0xFFFFFFC0)
        a.send(EX8_REQUEST, split=[20, 20, 20])
        a.send(EX8_RESPONSE + READ_REQUEST + EX8_RESPONSE, from_client=False)
        a.send(READ_REQUEST + EX8_REQUEST, split=[40])
        b = w.tcp_connection(("fd00::1", 40001), ("fd00::2", 1153))
        b.send(EX8_REQUEST, split=7)
        b.send(EX8_RESPONSE, from_client=False)
        w.udp(("10.0.0.3", 40002), ("10.0.0.2", 1153), READ_REQUEST)
        w.udp(("fd00::3", 40003), ("fd00::2", 1153), EX8_REQUEST)
        a.close()
    records = list(read_capture(path))
    assert len(records) == 10 and all(r.error is None for r in records)
    assert_same_as_tshark(path, records)


def test_out_of_order_matches_tshark(tshark: str, tmp_path: Path) -> None:
    """With tshark's out-of-order reassembly on (off by default in 4.0) it agrees with us."""
    path = tmp_path / "ooo.pcap"
    with PcapWriter.open(path, start_time=1_700_000_000.0) as w:
        conn = w.tcp_connection(("10.0.0.1", 40000), ("10.0.0.2", 1153))
        conn.segment(EX8_REQUEST[40:], offset=40)
        conn.segment(EX8_REQUEST[:40], offset=0)
        conn.segment(EX8_REQUEST[:40], offset=0)  # retransmission
        conn.send(READ_REQUEST)
        conn.send(EX8_RESPONSE, from_client=False)
    records = list(read_capture(path))
    assert [r.frame for r in records] == [5, 7, 8]
    assert_same_as_tshark(path, records, ("-o", "tcp.reassemble_out_of_order:TRUE"))
