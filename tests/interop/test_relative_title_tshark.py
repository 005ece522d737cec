"""tshark judges a node's secured answer to a request that used relative AP titles (issue 17
item 9, digest 12): the answer keeps the relative form and its MAC is "Crypto good"."""

from __future__ import annotations

from pathlib import Path

import pytest

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.services import IdentifyRequest
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import SequenceNonceSource
from c1222.meter.services import MeterServices
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.types import TimeDate
from c1222.transport.pcap import PcapWriter
from tests.interop.tshark import tshark_fields

pytestmark = pytest.mark.interop

KEY_BYTES = {2: bytes.fromhex("01020304050607080102030405060708")}
KEYS = KeyTable(KEY_BYTES)
METER = "2.16.124.113620.1.22.0.123.8437"
NOW = 1_700_000_000.0


@pytest.mark.parametrize("mode", [1, 2])
def test_a_secured_answer_to_relative_titles_is_relative_and_crypto_good(
        tmp_path: Path, mode: int) -> None:
    tables = build_tables(MeterProfile(ap_title=METER), now=TimeDate(2026, 1, 1, 0, 0, 0))
    clock = TimeDate(2026, 1, 1, 0, 0, 0)
    responder = Responder(ResponderConfig(ap_title=Uid.parse(METER), keys=KEYS),
                          MeterServices(tables, Uid.parse(METER), clock=lambda: clock),
                          SequenceNonceSource([bytes.fromhex("6553f101")], [44]))
    # MeteringSDK's form: the meter addressed as `.123.8437`, the client calling as `.123.4`.
    requester = Requester(Uid.parse(".123.4"),
                          SequenceNonceSource([bytes.fromhex("6553f100")], [333976609]),
                          keys=KEYS, security_mode=mode, key_id=2)
    pending = requester.request([IdentifyRequest()], Uid.parse(".123.8437"))
    answer = responder.receive(pending.data, 1, NOW).data
    assert answer is not None
    decoded = acse.decode(answer)
    assert str(decoded.calling_ap_title) == ".123.8437"
    assert str(decoded.called_ap_title) == ".123.4"
    path = tmp_path / "relative.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection()
        conn.send(pending.data)
        conn.send(answer, from_client=False)
    rows = tshark_fields(path, ["c1222.crypto_good", "c1222.crypto_bad",
                                "c1222.calling_ap_title_rel", "c1222.calling_ap_title_abs"],
                         keys=KEY_BYTES, display_filter="c1222")
    assert [r["c1222.crypto_good"] for r in rows] == [["1"], ["1"]]
    assert [r["c1222.crypto_bad"] for r in rows] == [["0"], ["0"]]
    # The answer's A6 is the relative title, as tshark reads it (no absolute form on the wire).
    assert rows[1]["c1222.calling_ap_title_abs"] == []
    assert rows[1]["c1222.calling_ap_title_rel"] == [".123.8437"]
