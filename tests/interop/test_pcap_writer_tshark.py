"""Captures written by PcapWriter are dissected by tshark as C12.22, whole and well formed."""

from __future__ import annotations

from pathlib import Path

import pytest

from c1222.transport.pcap import PcapWriter
from tests.interop.tshark import malformed_or_expert, tshark_fields, tshark_verbose
from tests.vectors import EX8_REQUEST, EX8_RESPONSE, IDENT_REQUEST, IDENT_RESPONSE, READ_REQUEST, READ_RESPONSE

pytestmark = pytest.mark.interop

KEY_ID = 2
KEY = bytes.fromhex("01020304050607080102030405060708")


# Data frames, in order: (frame, what it carries) for the capture built below.
# Frames 1-3 are the handshake of the IPv4 connection, 10-12 that of the IPv6 one.
EXPECTED_C1222_FRAMES = {4: "ex8", 5: "ex8", 6: "ident", 7: "ident", 8: "read", 9: "read",
                         13: "ex8", 14: "ex8", 15: "read", 16: "ex8"}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("writer") / "exchanges.pcap"
    with PcapWriter.open(path, start_time=1_700_000_000.0) as w:
        v4 = w.tcp_connection(("10.0.0.1", 40000), ("10.0.0.2", 1153))
        for request, response in ((EX8_REQUEST, EX8_RESPONSE), (IDENT_REQUEST, IDENT_RESPONSE),
                                  (READ_REQUEST, READ_RESPONSE)):
            v4.send(request)
            v4.send(response, from_client=False)
        v6 = w.tcp_connection(("fd00::1", 40001), ("fd00::2", 1153))
        v6.send(EX8_REQUEST)
        v6.send(EX8_RESPONSE, from_client=False)
        w.udp(("10.0.0.3", 40002), ("10.0.0.2", 1153), READ_REQUEST)
        w.udp(("fd00::3", 40003), ("fd00::2", 1153), EX8_REQUEST)
        v4.close()
        v6.close()
    return path


def test_every_data_frame_is_c1222(tshark: str, written: Path) -> None:
    rows = tshark_fields(written, ["c1222.MESSAGE_element", "tcp.len", "udp.length"],
                         display_filter="tcp.len > 0 or udp")
    assert {int(r["frame.number"][0]) for r in rows} == set(EXPECTED_C1222_FRAMES)
    assert all(len(r["c1222.MESSAGE_element"]) == 1 for r in rows)


def test_no_malformed_packets_or_tcp_analysis_flags(tshark: str, written: Path) -> None:
    assert malformed_or_expert(written, keys={KEY_ID: KEY}) == []
    flagged = tshark_fields(written, ["tcp.analysis.flags"], display_filter="tcp.analysis.flags")
    assert flagged == []


def test_tshark_decodes_the_services(tshark: str, written: Path) -> None:
    rows = tshark_fields(written, ["c1222.cmd", "c1222.read.table", "c1222.err"],
                         display_filter="frame.number in {6, 7, 8, 9}")
    by_frame = {int(r["frame.number"][0]): r for r in rows}
    assert by_frame[6]["c1222.cmd"] == ["0x20"]              # Identify
    assert by_frame[8]["c1222.cmd"] == ["0x30"]              # Full Read
    assert by_frame[8]["c1222.read.table"] == ["0x0000"]
    assert by_frame[9]["c1222.err"] == ["0x00"]              # OK


def test_example8_crypto_good_with_the_key(tshark: str, written: Path) -> None:
    ex8_frames = [f for f, what in EXPECTED_C1222_FRAMES.items() if what == "ex8"]
    rows = tshark_fields(written, ["c1222.crypto_good", "c1222.crypto_bad"],
                         keys={KEY_ID: KEY}, display_filter="c1222")
    good = {int(r["frame.number"][0]) for r in rows if r["c1222.crypto_good"] == ["1"]}
    bad = {int(r["frame.number"][0]) for r in rows if r["c1222.crypto_bad"] not in ([], ["0"])}
    assert good == set(ex8_frames)
    assert bad == set()


def test_example8_without_the_key_is_not_verified(tshark: str, written: Path) -> None:
    rows = tshark_fields(written, ["c1222.crypto_good"], display_filter="c1222")
    assert all(r["c1222.crypto_good"] != ["1"] for r in rows)


def test_verbose_shows_the_decrypted_example8(tshark: str, written: Path) -> None:
    text = tshark_verbose(written, keys={KEY_ID: KEY})
    assert "Crypto good: True" in text
    assert "MANUFACTURER SN" in text or "4d414e554641435455524552" in text.replace(":", "")
