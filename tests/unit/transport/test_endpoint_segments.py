"""Segmentation on the wire (codec.segments through transport.endpoint): APDUs larger than a
link's ``max_apdu_size`` go as segments and arrive whole, on TCP and UDP; a segment that
cannot be reassembled is answered with what ``on_segment_error`` returns (Responder.refuse)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid, tlv
from c1222.codec.epsem import Epsem
from c1222.codec.segments import segment
from c1222.codec.services import ErrorResponse, FullWriteRequest, ReadResponse, TableData
from c1222.codes import ResponseCode
from c1222.crypto.nonces import FixedNonceSource
from c1222.session.responder import Responder, ResponderConfig
from c1222.transport.endpoint import Endpoint, EndpointLimits, Link

HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")
DATA = bytes(i % 253 for i in range(5000))


def request(invocation: int = 9) -> bytes:
    return Apdu(epsem=Epsem(services=(FullWriteRequest(6, TableData(DATA)),)),
                calling_ap_invocation_id=invocation, called_ap_title=METER,
                calling_ap_title=HEADEND).encode()


def response_to(data: bytes) -> bytes:
    apdu = acse.decode(data)
    return Apdu(epsem=Epsem(services=(ReadResponse(table_data=TableData(DATA[::-1])),)),
                calling_ap_invocation_id=77, called_ap_invocation_id=apdu.calling_ap_invocation_id,
                called_ap_title=HEADEND, calling_ap_title=METER).encode()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_large_apdus_cross_a_small_apdu_link_whole(transport: str) -> None:
    async def main() -> None:
        received: list[bytes] = []

        async def serve(data: bytes, link: Link) -> tuple[bytes | None, bool]:
            received.append(data)
            return response_to(data), False

        small = EndpointLimits(segment_size=300)
        async with Endpoint(serve, limits_=small) as server, Endpoint(limits_=small) as client:
            host, port = await server.listen("127.0.0.1", 0)
            link = await client.connect(host, port, transport, 5)
            assert link.max_apdu_size == 300
            answer = await client.exchange(link, request(), 9, timeout=10)
            assert received == [request()]  # the server's handler saw it whole
            assert answer == response_to(request())
            assert client.stats["segments_sent"] == len(segment(request(), 300)) > 10
            assert server.stats["segments_sent"] == len(segment(answer, 300))
            assert server.stats["segments_received"] == client.stats["segments_sent"]
            assert client.reassembler.pending == server.reassembler.pending == 0

    asyncio.run(main())


def test_reassembly_errors_are_answered_by_on_segment_error() -> None:
    """Hostile segments on a raw TCP socket: overlaps that disagree (SGERR), a total of 2 GiB
    (RQTL with the largest size), and a well-formed message still served afterwards."""
    async def main() -> None:
        responder = Responder(ResponderConfig(ap_title=METER, max_request_size=20_000),
                              handler=None,  # type: ignore[arg-type]
                              nonces=FixedNonceSource(b"\0\0\0\1", 5))
        codes: list[ResponseCode] = []

        def refused(data: bytes, link: Link, code: ResponseCode) -> bytes | None:
            codes.append(code)
            return responder.refuse(data, code).data

        async def serve(data: bytes, link: Link) -> tuple[bytes | None, bool]:
            return response_to(data), False

        limits = EndpointLimits(max_apdu_size=20_000)
        async with Endpoint(serve, limits_=limits, on_segment_error=refused) as server:
            host, port = await server.listen("127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(host, port)
            parts = segment(request(3), 400)
            bad = bytearray(parts[1])
            bad[-1] ^= 0xFF  # the same range as a resend of part 1, with other bytes
            forged = raw_segment(2**31, 400, b"\x00" * 100, 3)
            writer.write(parts[0] + parts[1] + bytes(bad) + forged)
            answers = [await _read_apdu(reader) for _ in range(2)]
            codes_seen = [acse.decode(a, [FullWriteRequest(6, TableData(b""))]).epsem.services[0]
                          for a in answers]
            assert codes == [ResponseCode.SGERR, ResponseCode.RQTL]
            assert [c.response_code for c in codes_seen] == [ResponseCode.SGERR,
                                                              ResponseCode.RQTL]
            assert isinstance(codes_seen[1], ErrorResponse) and codes_seen[1].max_size == 20_000
            assert acse.decode(answers[0]).called_ap_invocation_id == 3  # A4 = the A8
            # the link is still good: a whole message in segments is served
            writer.write(b"".join(segment(request(4), 400)))
            whole = b""
            while True:
                part = await _read_apdu(reader)
                header = acse.segment_header(part)
                if header is None:
                    whole = part
                    break
                whole += header.payload
                if len(whole) == header.total:
                    break
            assert whole == response_to(request(4))
            writer.close()

    asyncio.run(main())


def raw_segment(total: int, offset: int, payload: bytes, invocation: int) -> bytes:
    """A segment written by hand (codec.segments' layout), with any total."""
    def integer(value: int) -> bytes:
        return tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))

    return tlv(0x60, tlv(0xA2, METER.encode(0x06)) + tlv(0xA3, integer(total))
               + tlv(0xA6, HEADEND.encode(0x06)) + tlv(0xA8, integer(invocation))
               + tlv(0xBE, tlv(0x28, integer(offset) + tlv(0x81, payload))))


async def _read_apdu(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readexactly(2), 10)
    if head[1] < 0x80:
        return head + await reader.readexactly(head[1])
    extra = await reader.readexactly(head[1] & 0x7F)
    return head + extra + await reader.readexactly(int.from_bytes(extra, "big"))
