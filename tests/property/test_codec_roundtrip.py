"""Round trips of every message type, stream splitting, and hostile bytes."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c1222.codec import acse, text
from c1222.codec.framing import StreamFramer
from c1222.errors import DecodeError
from tests.property.strategies import apdus, exchanges, requests

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(exchanges())
def test_request_and_response_round_trip(exchange):
    request, response, reqs = exchange
    req_bytes = request.encode()
    assert acse.decode(req_bytes) == request
    resp_bytes = response.encode()
    assert acse.decode(resp_bytes, reqs) == response
    assert acse.decode(resp_bytes, reqs).encode() == resp_bytes


@SETTINGS
@given(exchanges())
def test_canonical_json_round_trip(exchange):
    request, response, _ = exchange
    for apdu in (request, response):
        value = json.loads(json.dumps(text.to_json(apdu)))
        assert text.from_json(value) == apdu
        assert text.from_json(value).encode() == apdu.encode()


@SETTINGS
@given(st.lists(exchanges(), min_size=1, max_size=4), st.data())
def test_every_split_of_a_stream_gives_the_same_messages(exchange_list, data):
    messages = [m.encode() for ex in exchange_list for m in ex[:2]]
    stream = b"".join(messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    framer = StreamFramer()
    got = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        got += framer.feed(stream[previous:cut])
        previous = cut
    assert got == messages
    assert framer.buffered == 0


def test_every_single_split_point_of_two_messages():
    from c1222.codec.samples import messages

    first, second = (m.encode() for m in messages()[:2])
    stream = first + second
    for cut in range(len(stream) + 1):
        framer = StreamFramer()
        assert framer.feed(stream[:cut]) + framer.feed(stream[cut:]) == [first, second]


def _decodes_or_decode_error(data: bytes) -> None:
    try:
        apdu = acse.decode(data)
    except DecodeError as exc:
        assert 0 <= exc.offset <= len(data)
        return
    # What decodes must survive the canonical text form too.
    text.from_json(json.loads(json.dumps(text.to_json(apdu))))


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_give_a_value_or_a_decode_error(data):
    _decodes_or_decode_error(data)
    _decodes_or_decode_error(b"\x60" + bytes([len(data)]) + data if len(data) < 128 else data)


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(exchanges(), st.data())
def test_mutated_messages_give_a_value_or_a_decode_error(exchange, data):
    request, response, reqs = exchange
    raw = bytearray(data.draw(st.sampled_from([request, response])).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if kind == "flip" and raw:
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    _decodes_or_decode_error(bytes(raw))
    try:
        acse.decode(bytes(raw), reqs)
    except DecodeError:
        pass


@SETTINGS
@given(st.lists(requests, min_size=1, max_size=3).flatmap(lambda r: apdus(tuple(r))))
def test_decode_is_the_inverse_of_encode_for_requests(apdu):
    assert acse.decode(acse.encode(apdu)) == apdu
