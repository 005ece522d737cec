"""Segmentation (c1222-network.md): every APDU, every segment size, every order of arrival,
with duplicates, reassembles to the same bytes; any bytes give a header, None or DecodeError."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from c1222.codec import acse
from c1222.codec.segments import Reassembler, ReassemblyLimits, segment
from c1222.errors import DecodeError, LocalProtocolError
from tests.property.strategies import exchanges

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(exchanges(), st.data())
def test_every_apdu_every_size_every_order_reassembles(exchange, data):
    segmented = 0
    for apdu in exchange[:2]:
        # the strategy may give A3 (a segment's own element): whole APDUs have none
        whole = dataclasses.replace(apdu, called_ae_qualifier=None).encode()
        max_size = data.draw(st.integers(64, max(64, len(whole) + 8)), label="max_size")
        try:
            parts = segment(whole, max_size)
        except LocalProtocolError:  # long titles: the header alone fills a small segment
            continue
        assert all(len(p) <= max_size for p in parts)
        if len(parts) == 1:
            assert parts == [whole] and acse.segment_header(whole) is None
            continue
        # arrival: any order, some segments twice (a UDP resend)
        order = data.draw(st.permutations(parts))
        extra = data.draw(st.lists(st.sampled_from(parts), max_size=4))
        arrivals = list(order) + extra
        cut = data.draw(st.integers(len(parts), len(arrivals)))
        arrivals = arrivals[:cut]
        # n segments in any order make up to n/2 separate ranges (the 10-range bound has a
        # unit test of its own)
        reassembler = Reassembler(ReassemblyLimits(max_size=len(whole), max_ranges=len(parts)))
        got = [r for r in (reassembler.feed(acse.segment_header(p), "a", 0.0) for p in arrivals)
               if r is not None]
        assert got[0] == whole
        # a duplicate after completion starts over, and holds at most that one segment
        assert reassembler.pending <= 1 and reassembler.buffered <= len(whole)
        segmented += 1
    event(f"segmented {segmented}")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_give_a_header_none_or_a_decode_error(data):
    framed = bytes((0x60, len(data))) + data if len(data) < 128 else data
    for candidate in (data, framed):
        try:
            acse.segment_header(candidate)
        except DecodeError:
            pass
