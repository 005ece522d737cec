"""Hostile segments against a running `c1222 meter` (docs/segmentation.md, "Bounds"): overlaps
that disagree and offsets past the total are SGERR, a total of 2 GiB is RQTL with the meter's
largest size, a thousand never-finished messages (one connection, then a hundred UDP sources)
leave its memory flat and its service intact, and a segment sent on another association never
completes (or spoils) a message of this one."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid, tlv
from c1222.codec.epsem import Epsem
from c1222.codec.segments import segment
from c1222.codec.services import FullReadRequest, FullWriteRequest, TableData
from c1222.codes import ResponseCode
from tests.e2e.hostile import RssSampler, exchange, first_codes, report, tcp, udp_exchange
from tests.e2e.procs import Running

METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")
PEER = Uid.parse("2.16.124.113620.1.22.0.123.4")
MAX_APDU = 40_000


def write_request(invocation: int, size: int = 230) -> bytes:
    """A Full Write of Table 6 without a Security service: refused ISC once it is whole."""
    return Apdu(epsem=Epsem(services=(FullWriteRequest(6, TableData(bytes(size))),)),
                calling_ap_invocation_id=invocation, called_ap_title=METER,
                calling_ap_title=PEER).encode()


def raw_segment(total: int, offset: int, payload: bytes, invocation: int) -> bytes:
    def integer(value: int) -> bytes:
        return tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))

    return tlv(0x60, tlv(0xA2, METER.encode(0x06)) + tlv(0xA3, integer(total))
               + tlv(0xA6, PEER.encode(0x06)) + tlv(0xA8, integer(invocation))
               + tlv(0xBE, tlv(0x28, integer(offset) + tlv(0x81, payload))))


@pytest.fixture(scope="module")
def meter() -> Iterator[tuple[Running, tuple[str, int]]]:
    running = Running(["meter", "--listen", "127.0.0.1:0", "--max-apdu-size", str(MAX_APDU)])
    address = running.address()
    try:
        yield running, address
    finally:
        assert running.stop() == 0


def answer_to(sock: socket.socket, parts: list[bytes]) -> Apdu:
    return acse.decode(exchange(sock, b"".join(parts)))


def test_contradictory_segments_are_sgerr_and_a_2_gib_total_is_rqtl(meter) -> None:
    _, address = meter
    whole = write_request(7)
    parts = segment(whole, 128)
    bad = bytearray(parts[1])
    bad[-1] ^= 0xFF
    with tcp(address) as sock:
        # the same range twice with other bytes
        sock.sendall(parts[0] + parts[1])
        answer = acse.decode(exchange(sock, bytes(bad)))
        assert first_codes([answer.encode()]) == [ResponseCode.SGERR]
        assert answer.called_ap_invocation_id == 7 and answer.called_ap_title == PEER
        # an offset at the total, and a slice running past it
        for offset, payload in ((len(whole), b"x"), (len(whole) - 1, b"xy")):
            got = exchange(sock, raw_segment(len(whole), offset, payload, 8))
            assert first_codes([got]) == [ResponseCode.SGERR]
        got = exchange(sock, raw_segment(2**31, 0, b"\x60" * 50, 9))
        refusal = acse.decode(got).epsem.services[0]
        assert refusal.response_code == ResponseCode.RQTL
        assert refusal.max_size == MAX_APDU  # type: ignore[attr-defined]
        # the association still works: the whole message, in segments, is served
        assert first_codes([answer_to(sock, segment(write_request(10), 128)).encode()]) == [
            ResponseCode.ISC]


def test_a_thousand_never_finished_messages(meter) -> None:
    running, address = meter
    sampler = RssSampler(running.proc.pid)
    started = time.monotonic()
    # one connection: 1000 first segments of 30 KB messages, never finished
    with tcp(address) as sock:
        sock.sendall(b"".join(raw_segment(30_000, 0, b"\x60" * 300, 1000 + i)
                              for i in range(1000)))
        # then a hundred UDP sources, ten each
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                for i in range(10):
                    udp.sendto(raw_segment(30_000, 0, b"\x60" * 300, i), address)
        # the same connection is still served, a segmented request whole
        codes = first_codes([answer_to(sock, segment(write_request(11), 128)).encode()])
    read_1 = Apdu(epsem=Epsem(services=(FullReadRequest(1),)), calling_ap_invocation_id=12,
                  called_ap_title=METER).encode()
    with tcp(address) as other:
        read = exchange(other, read_1)
    # UDP is served in arrival order: this answer comes after the whole flood was handled
    read_udp = udp_exchange(address, read_1, timeout=30)
    peak = sampler.stop()
    report("segmentation: 2,000 never-finished messages",
           sampler.line("meter"), f"{time.monotonic() - started:.1f} s")
    assert codes == [ResponseCode.ISC]
    assert first_codes([read, read_udp]) == [ResponseCode.OK, ResponseCode.OK]
    # 4 per association and 64 in all are held: a few hundred KiB at most, never 60 MB
    assert peak - sampler.before < 20 * 1024, sampler.line("meter")


def test_a_segment_on_another_association_never_completes_this_ones_message(meter) -> None:
    _, address = meter
    whole = write_request(20, size=600)
    parts = segment(whole, 200)
    forged_last = bytearray(parts[-1])
    forged_last[-1] ^= 0xFF
    with tcp(address) as mine, tcp(address) as theirs:
        mine.sendall(b"".join(parts[:-1]))
        theirs.sendall(bytes(forged_last))  # the same A8 and title, another connection
        theirs.settimeout(1.0)
        with pytest.raises(TimeoutError):  # its own one-segment message: incomplete, silent
            theirs.recv(1)
        assert first_codes([exchange(mine, parts[-1])]) == [ResponseCode.ISC]
