"""tshark judges a segmented run (tests/e2e/test_segmentation.py's network: head-end and meter
in mode 2, 512-byte APDU links, Table 64 read and written whole): every frame is dissected as
C12.22; whole APDUs (the Register with its binary native address among them) have no
malformed field and no expert error; each segment draws exactly the complaints Wireshark's
grammar makes about the 2008 format's A3 and nothing else.

What Wireshark objects to (4.0; epan/dissectors/asn1/c1222/c1222.asn, unchanged in master):
its MESSAGE SEQUENCE lists [1] [2] [4] [6] [7] [8] [11] [12] [30] and has no [3]
(called-AE-qualifier), the element a segment adds. The BER sequence helper, after A2, meets A3
where it expects the mandatory A8 ("Wrong field in SEQUENCE: expected ... tag:8 but found ...
tag:3"), then A6 where only BE could come ("expected ... tag:30 but found ... tag:6"), and
files A8 and BE as "beyond the end of the known sequence definition": four Warning/Malformed
expert items, so the segment's payload is never dissected. (Its User-information code would
not take the segment's EXTERNAL either: after 28 it expects the octet-aligned [1] at once,
not the INTEGER indirect reference.) Our segments follow Itron's 2008 stack byte for byte;
the dissector predates the format."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from c1222.codec import acse
from c1222.codec.native import decode_native_address
from c1222.codec.services import RegisterRequest
from c1222.transport.pcap import read_capture
from c1222.crypto.keys import KeyTable
from c1222.crypto.policy import unprotect
from tests.e2e.test_segmentation import KEY, SEGMENT, start
from tests.interop.tshark import EXPERT_ERROR, require_tshark, tshark_fields

KEYS = KeyTable.from_cli([KEY])
KEY_BYTES = {2: bytes.fromhex(KEY.split(":")[1])}

#: The complaints of Wireshark's BER sequence helper about a segment, in order.
SEGMENT_COMPLAINTS = [
    "BER Error: Wrong field in SEQUENCE: expected class:CONTEXT(2) tag:8 but found "
    "class:CONTEXT(2) tag:3",
    "BER Error: Wrong field in SEQUENCE: expected class:CONTEXT(2) tag:30 but found "
    "class:CONTEXT(2) tag:6",
    "BER Error: This field lies beyond the end of the known sequence definition.",
    "BER Error: This field lies beyond the end of the known sequence definition.",
]


@pytest.mark.interop
def test_tshark_dissects_every_segment_and_objects_only_to_a3(tmp_path: Path) -> None:
    require_tshark()
    network = start(tmp_path)
    try:
        read = network.service("read", {"table": 64})
        assert read["response_codes"] == ["ok", "ok"]
        data = bytes.fromhex(read["response"]["json"]["services"][-1]["table_data"]["data"])
        written = network.service("write", {"table": 64, "data": data.hex()})
        assert written["response_codes"] == ["ok", "ok"]
        ports = {int(re.search(r":(\d+)$", line).group(1))  # type: ignore[union-attr]
                 for proc in (network.headend, network.meter) for line in proc.lines
                 if "listening on tcp+udp" in line}
    finally:
        assert network.meter.stop() == 0
        assert network.headend.stop() == 0
    pcap = network.meter_pcap
    decode_as = [option for port in sorted(ports)
                 for option in ("-d", f"tcp.port=={port},c1222", "-d", f"udp.port=={port},c1222")]
    captured = list(read_capture(pcap, ports=None))
    assert captured and all(c.ok for c in captured)
    rows = {int(r["frame.number"][0]): r for r in tshark_fields(
        pcap, ["_ws.malformed", "_ws.expert.severity", "_ws.expert.message",
               "c1222.called_ap_title_abs"],
        keys=KEY_BYTES, display_filter="c1222", extra_options=decode_as)}
    assert sorted(rows) == sorted({c.frame for c in captured}), "a frame tshark did not take"
    segments = wholes = 0
    registers = []
    for message in captured:
        row = rows[message.frame]
        header = acse.segment_header(message.data)
        if header is None:
            wholes += 1
            assert not row["_ws.malformed"], (message.frame, row)
            assert all(int(s, 0) < EXPERT_ERROR for s in row["_ws.expert.severity"]), row
            if not acse.decode(message.data).is_response:
                apdu = unprotect(message.data, KEYS)
                registers += [s for s in apdu.epsem.services if isinstance(s, RegisterRequest)]
            continue
        segments += 1
        assert len(message.data) <= SEGMENT
        assert row["_ws.expert.message"] == SEGMENT_COMPLAINTS, (message.frame, row)
        assert all(int(s, 0) < EXPERT_ERROR for s in row["_ws.expert.severity"]), row
        assert row["c1222.called_ap_title_abs"], "the header before A3 is still dissected"
    # the 39 KB read response and the 39 KB write request went as segments
    assert segments >= 2 * 39_000 // SEGMENT
    print(f"{len(captured)} APDUs: {segments} segments, {wholes} whole")
    assert wholes > 0
    # the meter's Register (tshark decrypted it, found nothing malformed) carries the binary
    # native address: 4 bytes of IPv4 and the port
    assert registers and len(registers[0].native_address) == 6
    assert decode_native_address(registers[0].native_address)[0] == "127.0.0.1"


@pytest.mark.interop
def test_registers_with_binary_native_addresses_are_clean(tmp_path: Path) -> None:
    """A cleartext Register with a 6-byte (IPv4) and an 18-byte (IPv6) native address, and the
    Resolve answers carrying them: no malformed field, no expert error."""
    from c1222.codec.acse import Apdu
    from c1222.codec.ber import Uid
    from c1222.codec.epsem import Epsem
    from c1222.codec.native import encode_native_address
    from c1222.codec.services import ResolveResponse
    from c1222.transport.pcap import PcapWriter
    from tests.interop.tshark import malformed_or_expert

    require_tshark()
    meter, headend = Uid.parse("2.16.124.113620.1.22.0.123.8437"), Uid.parse(
        "2.16.124.113620.1.22.0.123.4")
    pcap = tmp_path / "native.pcap"
    with PcapWriter.open(pcap, start_time=1_700_000_000.0) as writer:
        conn = writer.tcp_connection(("10.0.0.2", 40000), ("10.0.0.1", 1153))
        for i, host in enumerate(("10.0.0.2", "2001:db8::2")):
            native = encode_native_address(host, 1153)
            register = RegisterRequest(0x20, 0x40, b"SIMU", meter, Uid.parse(".1"), native,
                                       3600)
            conn.send(Apdu(epsem=Epsem(services=(register,)), calling_ap_invocation_id=i + 1,
                           called_ap_title=headend, calling_ap_title=meter).encode(),
                      from_client=True)
            conn.send(Apdu(epsem=Epsem(services=(ResolveResponse(native_address=native),)),
                           calling_ap_invocation_id=i + 10, called_ap_invocation_id=i + 1,
                           called_ap_title=meter, calling_ap_title=headend).encode(),
                      from_client=False)
    assert malformed_or_expert(pcap) == []
    assert len(list(read_capture(pcap))) == 4
