"""`c1222 conformance` against a device on the January-2008 draft of C12.22 (issue 17 item 15).

The double below is modelled on what Itron's reference stack for that draft does (read from its
source, digest source ITR; none of it copied): it reads a message as 2008 form only when its A8
is ``A8 03 02 01 xx`` or ``A8 04 02 02 xx xx`` (``ACSE_Message_IsMarch2006FormatMessage``). Our
4-byte A8 (``A8 06 02 04 ...``) makes it a segmented March-2006 message whose "full length" is too
large, so it answers RQTL in March-2006 form: A4 and A8 as bare bytes, the EPSEM bare in BE
(``C1222AL_MakeSimpleResponseMessage``; the stack's own functions, run on our requests, gave
RQTL for 198 and SGERR for 2 of 200 4-byte ids, a 40-byte answer). A 3-byte A8 is neither form
and gets no answer. It serves Identify, Full read, Partial read offset, the
two writes and Disconnect; Deregister is IAR when it is not registered; every other service is
SNS (``C1222Server_ProcessPsemRequest``). Before the fix the tester ran 0 cases and exited 3
("no response within 5 s") although the answer was in its pcap.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from c1222.codec.ber import Uid, read_length, read_tlv, tlv
from c1222.codec.services import ErrorResponse, Request, Response
from c1222.codes import ResponseCode, ServiceCode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import RandomNonceSource
from c1222.meter.services import MeterServices
from c1222.session.responder import Responder, ResponderConfig, ServiceContext
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.types import TimeDate
from c1222.transport.endpoint import Address, Endpoint, Link
from c1222.transport.pcap import read_capture
from tests.e2e.test_conformance import Conformance

TITLE = Uid.parse("2.16.124.113620.1.22.0.123.2008")
#: The calling AP title of its March-2006 answers: relative, tag 0D inside the ACSE.
TITLE_2006 = bytes.fromhex("0d037b8f58")
#: What the stack's service dispatcher serves; Deregister is IAR unless registered.
SERVED = {ServiceCode.IDENTIFY, ServiceCode.DISCONNECT, ServiceCode.FULL_READ,
          ServiceCode.PARTIAL_READ_OFFSET, ServiceCode.FULL_WRITE,
          ServiceCode.PARTIAL_WRITE_OFFSET}
#: Epsem of its March-2006 refusal: control 82, RQTL with a maximum of 0.
RQTL_2006 = bytes.fromhex("82050f00000000")
NOT_SUPPORTED = {"partial_read_index", "default_read", "out_of_sequence", "logon",
                 "wrong_password", "resolve", "trace"}


class DraftResponder(Responder):
    """Our responder behind the stack's service list: the rest is SNS, Deregister IAR."""

    def _serve(self, request: Request, ctx: ServiceContext) -> Response:
        if request.code == ServiceCode.DEREGISTER:
            return ErrorResponse(response_code=ResponseCode.IAR)
        if request.code not in SERVED:
            return ErrorResponse(response_code=ResponseCode.SNS)
        return super()._serve(request, ctx)


def elements(data: bytes) -> dict[int, bytes]:
    _, pos = read_length(data, 1, len(data))
    out = {}
    while pos < len(data):
        tag, start, stop = read_tlv(data, pos, len(data))
        out[tag] = data[start:stop]
        pos = stop
    return out


def form_2008(found: dict[int, bytes]) -> bool:
    """The stack's test, reduced: A3 is 2008; a bare EPSEM in BE or any other A8 is 2006."""
    if 0xA3 in found:
        return True
    if found.get(0xBE, b"\x28")[:1] != b"\x28":
        return False
    a8 = found.get(0xA8, b"")
    return len(a8) in (3, 4) and a8[0] == 0x02 and a8[1] == len(a8) - 2


@dataclass
class DraftDevice:
    address: Address
    a8s: list[bytes] = field(default_factory=list)  # the A8 contents of every request
    answers_2006: list[bytes] = field(default_factory=list)


@contextlib.contextmanager
def draft_device(*, behind_comm_module: bool = False) -> Iterator[DraftDevice]:
    """The double; ``behind_comm_module``: its March-2006 answers are dropped on the way, as
    Itron's own comm-module stack does (its format check refuses them), so a 4-byte A8 gets no
    answer at all."""
    def clock() -> TimeDate:
        return TimeDate.from_datetime(dt.datetime.fromtimestamp(int(time.time()),
                                                                dt.timezone.utc))

    tables = build_tables(MeterProfile(ap_title=str(TITLE)), now=clock())
    # No EAX' key (the draft's security is DES): a secured request gets SME here; the real
    # stack, run locally behind its comm module, answered none. The tests use mode 0.
    responder = DraftResponder(ResponderConfig(ap_title=TITLE, keys=KeyTable()),
                               MeterServices(tables, TITLE, clock=clock),
                               RandomNonceSource(invocation_id_size=2))
    sequence = iter(range(1, 1 << 16))
    device: DraftDevice

    async def on_request(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        found = elements(data)
        device.a8s.append(found.get(0xA8, b""))
        if form_2008(found):
            reply = responder.receive(data, link.id, time.time())
            return reply.data, reply.close
        if len(found.get(0xA8, b"")) - 2 not in (2, 4):
            return None, False  # not a 2006 segment either: neither form, the stack drops it
        # A 2006 segment whose "full length" (the A8's last two bytes) is over its 643-byte
        # buffer: RQTL. A4 is the first two bytes of the A8, read as a 2006 sequence number.
        body = tlv(0xA2, found[0xA6]) if 0xA6 in found else b""
        body += tlv(0xA6, TITLE_2006) + tlv(0xA4, found.get(0xA8, b"\0\0")[:2])
        body += tlv(0xA8, next(sequence).to_bytes(2, "big")) + tlv(0xBE, RQTL_2006)
        device.answers_2006.append(tlv(0x60, body))
        return (None if behind_comm_module else device.answers_2006[-1]), False

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    endpoint = Endpoint(on_request, on_link_closed=lambda link: responder.close(link.id))
    try:
        address = asyncio.run_coroutine_threadsafe(endpoint.listen("127.0.0.1", 0),
                                                   loop).result(10)
        device = DraftDevice(address)
        yield device
    finally:
        asyncio.run_coroutine_threadsafe(endpoint.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def run(device: DraftDevice, tmp: Path, *args: str) -> tuple[int, dict, list[str]]:
    host, port = device.address
    tester = Conformance([f"{host}:{port}", "--json", str(tmp / "report.json"),
                          "--junit", str(tmp / "report.xml"), "--pcap", str(tmp / "run.pcap"),
                          *args])
    status = tester.finish()
    return status, json.loads((tmp / "report.json").read_text()), tester.lines


def test_draft_device_is_tested_with_two_byte_invocation_ids(tmp_path: Path) -> None:
    with draft_device() as device:
        status, report, lines = run(device, tmp_path)
    output = "\n".join(lines)
    assert status == 1 and report["error"] is None, output  # before: 0 cases, exit 3
    rows = {c["case"]: c for c in report["cases"]}
    verdicts = {c["case"]: c["verdict"] for c in report["cases"]}
    # Its services run; what it does not offer is NOT SUPPORTED, not FAIL.
    for case in ("identify", "full_read", "partial_read_offset", "unknown_table",
                 "unknown_ap_title", "oversized", "disconnect"):
        assert verdicts[case] == "PASS", rows[case]
    for case in NOT_SUPPORTED:
        assert verdicts[case] == "NOT TESTED" and "NOT SUPPORTED" in rows[case]["reason"], \
            rows[case]
    # The refusal of 4-byte ids is one FAIL that says what came back; IAR is the stack's too.
    assert sorted(c for c, v in verdicts.items() if v == "FAIL") == \
        ["deregister_other", "invocation_id"], output
    row = rows["invocation_id"]
    assert row["response"] == f"March-2006 form, {len(device.answers_2006[0])} bytes"
    for words in ("4-byte calling AP invocation id", "A4 is the bare bytes 0204",
                  "without EXTERNAL (28): RQTL (0x0f), max 0", "2-byte ids"):
        assert words in row["reason"], row["reason"]
    assert row["exchanges"][0]["response_hex"] == device.answers_2006[0].hex()
    assert any("2-byte invocation ids" in note and "January-2008 draft" in note
               for note in report["notes"]), report["notes"]
    assert report["invocation_id_size"] == 2
    # Identify: the refused exchange, then the same request with a 2-byte A8, answered.
    first, again = rows["identify"]["exchanges"]
    assert first["error"].startswith("the answer was refused: answer in March-2006 form")
    assert "2-byte" in again["note"] and again["response"] is not None
    # Only the first request carried 4 bytes; every later one 2 (A8 04 02 02 xx xx).
    assert len(device.a8s[0]) == 6 and len(device.answers_2006) == 1
    assert all(a8[:2] == b"\x02\x02" for a8 in device.a8s[1:]), device.a8s
    assert "invocation_id" in output and "Traceback" not in output
    # The JUnit file and the pcap carry the refused answer too.
    suites = ET.parse(tmp_path / "report.xml").getroot()
    assert "invocation_id" in [c.get("name") for c in suites.iter("testcase")
                               if c.find("failure") is not None]
    frames = [c.data for c in read_capture(tmp_path / "run.pcap", ports=(device.address[1],))]
    assert device.answers_2006[0] in frames


def test_behind_a_comm_module_silence_to_four_byte_ids_is_confirmed(tmp_path: Path) -> None:
    with draft_device(behind_comm_module=True) as device:
        status, report, lines = run(device, tmp_path, "--timeout", "3")
    output = "\n".join(lines)
    assert status == 1 and report["error"] is None, output  # before: 0 cases, exit 3
    rows = {c["case"]: c for c in report["cases"]}
    assert rows["identify"]["verdict"] == rows["full_read"]["verdict"] == "PASS", output
    row = rows["invocation_id"]
    assert row["verdict"] == "FAIL" and row["response"] == "no response"
    assert "no answer within 3 s, twice, while smaller ones were answered" in row["reason"]
    assert any("comm module" in note for note in report["notes"]), report["notes"]
    # 4 bytes unanswered, 2 answered, 4 again (unanswered: not a slow start), 2 for good.
    assert [len(a8) - 2 for a8 in device.a8s[:5]] == [4, 2, 4, 2, 2], device.a8s
    assert all(len(a8) == 4 for a8 in device.a8s[3:])
    notes = [x["note"] for x in rows["identify"]["exchanges"]]
    assert notes[1:] == ["sent again with a 2-byte invocation id (the last was not answered)",
                         "sent again with a 4-byte invocation id (the last was answered)",
                         "sent again with a 2-byte invocation id (the last was not answered)"]
    assert report["invocation_id_size"] == 2


def test_four_byte_ids_only_say_what_came_back(tmp_path: Path) -> None:
    with draft_device() as device:
        status, report, lines = run(device, tmp_path, "--invocation-id-size", "4")
    assert status == 1 and report["error"] is None, "\n".join(lines)
    [identify] = report["cases"][1:]  # register (needs --listen), then Identify alone
    assert identify["verdict"] == "FAIL" and identify["response"].startswith("March-2006 form")
    assert "no response" not in identify["reason"]
    assert "A4 is the bare bytes 0204" in identify["reason"]
    assert "not 1 or 2 bytes (ours: A8 06 0204" in identify["reason"]
    assert any("answer to Identify was refused" in n for n in report["notes"])
    assert len(device.answers_2006) == 1 and report["invocation_id_size"] == 4


def test_two_byte_ids_from_the_start(tmp_path: Path) -> None:
    with draft_device() as device:
        status, report, lines = run(device, tmp_path, "--invocation-id-size", "2")
    verdicts = {c["case"]: c["verdict"] for c in report["cases"]}
    assert "invocation_id" not in verdicts and not device.answers_2006
    assert [c for c, v in verdicts.items() if v == "FAIL"] == ["deregister_other"]
    assert verdicts["identify"] == verdicts["full_read"] == "PASS"
    assert status == 1 and all(len(a8) == 4 for a8 in device.a8s), "\n".join(lines)
