"""Segmentation and reassembly, the 2008 format (c1222-network.md): wire form and the bounds
a hostile peer meets."""

from __future__ import annotations

import pytest

from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid, tlv
from c1222.codec.epsem import Epsem
from c1222.codec.segments import Reassembler, ReassemblyLimits, segment
from c1222.codec.services import FullReadRequest, ReadResponse, TableData
from c1222.errors import RQTL, SGERR, SGNP, DecodeError, LocalProtocolError

HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")


def big_response(size: int = 3000, invocation: int = 7) -> bytes:
    data = bytes(i % 251 for i in range(size))
    return Apdu(epsem=Epsem(services=(ReadResponse(table_data=TableData(data)),)),
                calling_ap_invocation_id=invocation, called_ap_invocation_id=5,
                called_ap_title=HEADEND, calling_ap_title=METER).encode()


def headers(parts: list[bytes]) -> list[acse.SegmentHeader]:
    found = [acse.segment_header(p) for p in parts]
    assert all(h is not None for h in found)
    return found  # type: ignore[return-value]


def test_wire_form_of_a_segment() -> None:
    whole = big_response(600)
    parts = segment(whole, 256)
    assert len(parts) == 4 and all(len(p) <= 256 for p in parts)
    first = parts[0]
    # 60 LL A2 (copied) A3 (total) A6 A8 (copied) BE 28 02 <offset> 81 <whole's bytes>
    a2 = tlv(0xA2, HEADEND.encode(0x06))
    assert first[3:3 + len(a2)] == a2
    a3 = tlv(0xA3, bytes((0x02, 0x02)) + len(whole).to_bytes(2, "big"))
    assert a3 in first and b"\xa4" not in first[:first.index(b"\xbe")]
    h = headers(parts)
    assert [x.total for x in h] == [len(whole)] * 4
    assert h[0].offset == 0 and h[0].payload.startswith(whole[:4])  # the whole's own 60 LL
    assert b"".join(x.payload for x in h) == whole
    assert {x.calling_ap_invocation_id for x in h} == {7}
    assert h[1].calling_ap_title == METER and h[1].called_ap_title == HEADEND
    assert acse.segment_header(whole) is None


def test_small_apdus_go_whole_and_bad_sizes_are_refused() -> None:
    request = Apdu(epsem=Epsem(services=(FullReadRequest(64),)), calling_ap_invocation_id=1,
                   called_ap_title=METER).encode()
    assert segment(request, 512) == [request]
    with pytest.raises(LocalProtocolError, match="no room"):
        segment(big_response(), 30)
    with pytest.raises(LocalProtocolError, match="segment already"):
        segment(segment(big_response(), 200)[0], 100)
    with pytest.raises(LocalProtocolError):
        segment(b"\x61" + bytes(600), 100)


def feed_all(r: Reassembler, parts: list[bytes], association: object = "a",
             now: float = 0.0) -> list[bytes]:
    return [w for w in (r.feed(h, association, now) for h in headers(parts)) if w is not None]


def test_in_order_reverse_and_duplicates() -> None:
    whole = big_response()
    parts = segment(whole, 300)
    for order in (parts, parts[::-1], [parts[0], parts[0], *parts[1:], parts[3]]):
        r = Reassembler()
        assert feed_all(r, order)[0] == whole
    r = Reassembler()
    assert feed_all(r, parts)[0] == whole and r.pending == 0 and r.buffered == 0


def test_overlapping_segments_that_agree_merge_and_that_disagree_are_sgerr() -> None:
    whole = big_response(1000)
    a, b = segment(whole, 700), segment(whole, 400)
    r = Reassembler()
    assert feed_all(r, [a[0], b[1], b[2], a[1]])[0] == whole  # overlaps agree
    r = Reassembler()
    r.feed(headers(a)[0], "a", 0.0)
    forged = headers(b)[1]
    bad = acse.SegmentHeader(forged.total, forged.offset, b"\xff" * len(forged.payload),
                             forged.calling_ap_invocation_id,
                             calling_ap_title=forged.calling_ap_title)
    with pytest.raises(SGERR, match="disagree"):
        r.feed(bad, "a", 0.0)
    assert r.pending == 0 and r.buffered == 0  # the message is dropped


def segment_at(total: int, offset: int, payload: bytes = b"x", invocation: int = 1,
               title: Uid | None = METER) -> acse.SegmentHeader:
    return acse.SegmentHeader(total, offset, payload, invocation, calling_ap_title=title)


def test_offsets_and_totals_that_make_no_sense_are_sgerr() -> None:
    r = Reassembler()
    for header in (segment_at(100, 100), segment_at(100, 250), segment_at(100, 99, b"xy"),
                   segment_at(100, 0, b""), segment_at(1, 0)):
        with pytest.raises(SGERR):
            r.feed(header, "a", 0.0)
    r.feed(segment_at(100, 10), "a", 0.0)
    with pytest.raises(SGERR, match="earlier one"):
        r.feed(segment_at(120, 20), "a", 0.0)
    assert r.pending == 0
    # bytes that complete "a message" but are no APDU of that size
    with pytest.raises(SGERR, match="not one APDU"):
        r.feed(segment_at(4, 0, b"\x61\x02\x00\x00"), "a", 0.0)


def test_a_total_of_2_gib_is_rqtl_before_anything_is_held() -> None:
    r = Reassembler(ReassemblyLimits(max_size=40_000))
    with pytest.raises(RQTL) as info:
        r.feed(segment_at(2**31, 0, b"\x60"), "a", 0.0)
    assert info.value.max_size == 40_000 and r.buffered == 0 and r.pending == 0


def test_at_most_ten_separate_ranges() -> None:
    r = Reassembler()
    for i in range(10):
        r.feed(segment_at(1000, i * 10), "a", 0.0)
    with pytest.raises(SGERR, match="10 separate"):
        r.feed(segment_at(1000, 500), "a", 0.0)


def test_a_thousand_never_finished_messages_hold_bounded_memory() -> None:
    limits = ReassemblyLimits(max_pending=64, max_per_association=4, max_buffered=100_000)
    r = Reassembler(limits)
    for i in range(1000):  # one association, then a thousand of them
        r.feed(segment_at(30_000, 0, b"\x60" * 9000, invocation=i), "hostile", 0.0)
    assert r.pending == 4 and r.buffered == 4 * 9000
    for i in range(1000):
        r.feed(segment_at(30_000, 0, b"\x60" * 9000, invocation=i), ("udp", i), 0.0)
    assert r.pending <= 64 and r.buffered <= 100_000
    assert r.stats["evicted"] >= 1000 - 64
    whole = big_response()
    assert feed_all(r, segment(whole, 300), "honest")[0] == whole  # others still served


def test_incomplete_messages_expire() -> None:
    r = Reassembler(ReassemblyLimits(timeout=60.0))
    whole = big_response()
    parts = segment(whole, 300)
    feed_all(r, parts[:-1], now=0.0)
    assert r.expire(59.0) == 0 and r.pending == 1
    assert r.expire(60.0) == 1 and r.pending == 0 and r.buffered == 0
    assert feed_all(r, parts[-1:], now=61.0) == []  # the rest of an expired message: new


def test_a_segment_for_another_associations_message_does_not_touch_it() -> None:
    whole = big_response()
    parts = segment(whole, 300)
    r = Reassembler()
    feed_all(r, parts[:-1], "a")
    forged = headers(parts[-1:])[0]
    bad = acse.SegmentHeader(forged.total, forged.offset, b"\x00" * len(forged.payload),
                             forged.calling_ap_invocation_id,
                             calling_ap_title=forged.calling_ap_title)
    assert r.feed(bad, "b", 0.0) is None  # b's own (never finished) message
    assert feed_all(r, parts[-1:], "a") == [whole]
    r.drop("b")
    assert r.pending == 0 and r.buffered == 0


def test_reassembly_off_is_sgnp() -> None:
    with pytest.raises(SGNP):
        Reassembler(ReassemblyLimits(max_pending=0)).feed(segment_at(100, 0), "a", 0.0)


def test_a_segment_with_a4_or_a_mac_is_a_decode_error() -> None:
    part = segment(big_response(), 300)[1]
    # put an A4 into the segment's header (after A2)
    a4 = tlv(0xA4, b"\x02\x01\x05")
    body = part[2:] if part[1] < 0x80 else part[2 + (part[1] & 0x7F):]
    forged = tlv(0x60, a4 + body)
    with pytest.raises(DecodeError, match="no A4"):
        acse.segment_header(forged)


def test_the_capture_dissector_names_a_segment() -> None:
    from c1222.session.dissect import Dissector

    parts = segment(big_response(600), 256)
    errors = [Dissector().dissect(p).error for p in parts]
    assert all(e is not None and "a segment (2008 format)" in str(e) for e in errors)
    assert "at offset 0 of a" in str(errors[0])
