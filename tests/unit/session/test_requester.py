"""The requester refuses oversized requests before building them, and a secured request's APDU
is the one that was sent (with its MAC)."""

from __future__ import annotations

import tracemalloc

import pytest

from c1222 import limits
from c1222.codec import text
from c1222.codec.ber import Uid, encode_length
from c1222.codec.services import (
    FullReadRequest,
    FullWriteRequest,
    PartialWriteIndexRequest,
    PartialWriteOffsetRequest,
    SecurityRequest,
    TableData,
)
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import FixedNonceSource
from c1222.errors import LimitExceeded
from c1222.session.requester import Requester, _framed_size
from c1222.tables.access import pad_password

METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")
ME = Uid.parse("2.16.124.113620.1.22.0.123.4")
KEYS = KeyTable({2: bytes(range(16))})


def requester(mode: int = 0) -> Requester:
    return Requester(ME, FixedNonceSource(b"\x00\x00\x00\x07", 0x1234), keys=KEYS,
                     security_mode=mode, key_id=2 if mode else None)


@pytest.mark.parametrize("service", [
    FullWriteRequest(3, TableData(b"x" * 70_000)),
    PartialWriteOffsetRequest(3, 5, TableData(b"y" * 200)),
    PartialWriteIndexRequest(3, (1, 2), TableData(b"z" * 10)),
    SecurityRequest(pad_password("P"), 2),
    FullReadRequest(1),
])
def test_the_size_computed_without_encoding_is_the_encoded_size(service) -> None:
    data = service.encode()
    assert _framed_size(service) == len(encode_length(len(data))) + len(data)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_a_request_over_the_apdu_limit_is_refused_before_it_is_built(mode: int) -> None:
    big = TableData(bytes(limits.MAX_APDU_SIZE))  # 16 MiB of table data: over with headers
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded, match="limit is 16777216"):
            requester(mode).request([FullWriteRequest(3, big)], METER)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # nothing the size of the data was allocated


def test_the_peers_largest_apdu_is_a_limit_too_and_the_exact_size_fits() -> None:
    req = requester()
    sent = req.request([FullWriteRequest(3, TableData(b"a" * 1000))], METER)
    size = len(sent.data)
    # exactly the size fits; one byte less is refused (the ACSE header counted too)
    assert len(req.request([FullWriteRequest(3, TableData(b"a" * 1000))], METER,
                           max_size=size).data) == size
    with pytest.raises(LimitExceeded):
        req.request([FullWriteRequest(3, TableData(b"a" * 1000))], METER, max_size=size - 1)
    with pytest.raises(LimitExceeded):  # the EPSEM alone is already over
        req.request([FullWriteRequest(3, TableData(b"a" * 1000))], METER, max_size=100)


@pytest.mark.parametrize("mode", [1, 2])
def test_a_secured_requests_apdu_carries_its_mac_and_its_tree_spans_the_bytes(mode: int
                                                                             ) -> None:
    sent = requester(mode).request([SecurityRequest(pad_password("P"), 2),
                                    FullReadRequest(1)], METER)
    assert sent.apdu.epsem.mac == sent.data[-4:]
    rows = text.tree(sent.apdu)
    joined = b"".join(data for _, _, data in rows)
    assert len(joined) == len(sent.data) and rows[0][2] == sent.data[:2]
    assert rows[-1][1] == "mac" and rows[-1][2] == sent.data[-4:]
    if mode == 1:
        assert joined == sent.data
