"""tshark judges our codec: the captures made by others, and what we encode ourselves."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from c1222.codec import acse, samples
from c1222.session.dissect import Dissector
from c1222.transport.pcap import PcapWriter, read_capture
from tests.interop.compare import FIELDS, differences
from tests.interop.tshark import malformed_or_expert, tshark_fields

CAPTURES = ["c1222_ident_service_tcp.pcap", "c1222_logon_service_tcp.pcap",
            "c1222_over_ipv6.pcap", "c1222_reg_service_tcp.pcap",
            "c1222_resolve_service_tcp.pcap", "c1222_rw_service_tcp.pcap",
            "c1222_security_service_tcp.pcap", "c1222_service_error_tcp.pcap",
            "c1222_std_example8.pcap", "c1222_trace_service_tcp.pcap",
            "c1222_wait_service_tcp.pcap", "c1222overIPv4.cap"]


def _ours_by_frame(path: Path) -> dict[int, list]:
    dissector = Dissector()
    frames: dict[int, list] = defaultdict(list)
    for rec in read_capture(path):
        assert rec.error is None, (rec.frame, rec.error)
        result = dissector.dissect(rec.data, rec.src, rec.dst)
        assert result.error is None, (rec.frame, result.error)
        frames[rec.frame].append(result.apdu)
    return frames


def _compare(path: Path) -> None:
    ours = _ours_by_frame(path)
    rows = {int(r["frame.number"][0]): r
            for r in tshark_fields(path, FIELDS, display_filter="c1222")}
    assert sorted(rows) == sorted(ours), "tshark and we see C12.22 in different frames"
    for frame, apdus in ours.items():
        assert differences(apdus, rows[frame]) == {}, f"frame {frame}"


@pytest.mark.interop
@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_decodes_as_tshark_sees_it(captures_dir, name):
    _compare(captures_dir / name)


@pytest.mark.interop
def test_messages_we_encode_are_dissected_by_tshark_as_meant(tmp_path):
    path = tmp_path / "samples.pcap"
    messages = samples.messages()
    with PcapWriter.open(path, start_time=1_700_000_000.0) as writer:
        conn = writer.tcp_connection(("10.0.0.1", 40000), ("10.0.0.2", 1153))
        for i, apdu in enumerate(messages):
            conn.send(apdu.encode(), from_client=i % 2 == 0)
        for i, apdu in enumerate(messages[:6]):
            src, dst = ("10.0.0.3", 1153), ("10.0.0.4", 1153)
            writer.udp(src if i % 2 == 0 else dst, dst if i % 2 == 0 else src, apdu.encode())
    assert malformed_or_expert(path) == []
    _compare(path)
    # And we read back exactly what we wrote.
    assert [acse.decode(r.data) for r in read_capture(path)][: len(messages)] == [
        acse.decode(m.encode()) for m in messages]
