"""The JSON text of `decode --json` (msgspec): the bytes of the standard library's compact form
for what the codec produces, and a fallback for what msgspec refuses."""

from __future__ import annotations

import json

from c1222.cli.codec import Source, _dumps, json_lines, record
from c1222.codec import samples
from c1222.session.dissect import Dissector

STD = json.JSONEncoder(separators=(",", ":")).encode


def _records() -> list[dict]:
    dissector = Dissector()
    out = []
    for frame, apdu in enumerate(samples.messages(), 1):
        data = apdu.encode()
        out.append(record(Source(frame, data, 1_700_000_000.000001 * frame, "a:1", "b:2", "tcp"),
                          dissector.dissect(data, "a:1", "b:2")))
    return out


def test_every_sample_record_is_the_standard_librarys_bytes() -> None:
    records = _records()
    assert len(records) > 20
    assert json_lines(records) == "".join(STD(r) + "\n" for r in records).encode()
    assert [_dumps(r) for r in records] == [STD(r) for r in records]


def test_big_integers_and_what_msgspec_refuses() -> None:
    value = {"n": 2**80, "s": "bad \ud800 surrogate", "t": None}
    assert _dumps(value) == STD(value)  # msgspec refuses the lone surrogate: stdlib writes it
    assert json_lines([value, {"n": -(2**70)}]) == (STD(value) + "\n" + STD({"n": -(2**70)})
                                                   + "\n").encode()
    assert json.loads(_dumps({"n": 2**80})) == {"n": 2**80}
