"""The display's C12.22 node, fed by the meter's own feed code (`c1222.meter.han`) through the
display's responder: only its own meter may write, every message is addressed to it, and a bad
context table never breaks the next update."""

from __future__ import annotations


import pytest

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.services import FullWriteRequest, TableData
from c1222.codes import ResponseCode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import RandomNonceSource
from c1222.ihd.node import IHD_AP_TITLE, METER_AP_TITLE, DisplayServices, ihd_title
from c1222.meter import config as meter_config
from c1222.meter.config import MeterConfig
from c1222.meter.han import DISPLAY_AP_TITLE, HanFeed
from c1222.meter.node import Meter
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.transport.client import responses

KEYS = KeyTable.from_cli(["2:000102030405060708090A0B0C0D0E0F"])
START = 1_780_000_000.0
UAT, IAR = ResponseCode.UAT, ResponseCode.IAR


class Node:
    """The display node (services + responder) as `c1222.ihd.app.Display` builds it."""

    def __init__(self, mode: int = 0, meter: str | None = None) -> None:
        self.samples: list = []
        self.services = DisplayServices(self.samples.append, meter)
        self.responder = Responder(
            ResponderConfig(ap_title=ihd_title(None), keys=KEYS, minimum_mode=mode),
            self.services, RandomNonceSource())

    def send(self, requester: Requester, services: list, called: Uid | None) -> list[int]:
        """Response codes of the services, as the meter would read them."""
        pending = requester.request(services, called)
        reply = self.responder.receive(pending.data, "link", START)
        assert reply.data is not None
        return [r.response_code for r in responses(requester.accept(reply.data, pending, START))]


def meter_feed(tmp_path, **options) -> HanFeed:
    cfg = MeterConfig(ihd=("127.0.0.1", 9), start_time=START, **options)
    clock = iter(range(100_000))
    meter = Meter(cfg, wall=lambda: START, monotonic=lambda: float(next(clock)))
    meter._measure_until(meter.sim_now())  # what start() does: tables hold a measured second
    return HanFeed(meter)


def feed(node: Node, han: HanFeed, called: Uid | None = None) -> list[int]:
    """One APDU of the meter's feed (context on the first), as `HanFeed.send_once` makes it."""
    services = han.services()
    codes = node.send(han.client.requester, services, called or han.called)
    han.answered(services, codes)
    return codes


def test_default_titles_agree_between_the_meter_and_the_display() -> None:
    assert DISPLAY_AP_TITLE == IHD_AP_TITLE
    assert METER_AP_TITLE == meter_config.METER_AP_TITLE


def test_every_feed_message_is_addressed_to_the_display(tmp_path) -> None:
    han = meter_feed(tmp_path)  # no --ihd-ap-title
    assert han.called == Uid.parse(IHD_AP_TITLE)
    pending = han.client.requester.request(han.services(), han.called)
    assert acse.decode(pending.data).called_ap_title.absolute() == Uid.parse(IHD_AP_TITLE)
    named = meter_feed(tmp_path, ihd_ap_title="2.16.124.113620.1.22.0.9")
    assert named.called == Uid.parse("2.16.124.113620.1.22.0.9")


def test_the_meter_feeds_a_sample(tmp_path) -> None:
    node, han = Node(), meter_feed(tmp_path)
    assert feed(node, han) == [0] * 11  # the context, the customer notice (MT2), the live
    assert feed(node, han) == [0, 0, 0]
    assert len(node.samples) == 2
    assert 200 < node.samples[0].voltage < 240 and node.samples[0].time >= START - 1


def test_writes_from_another_meter_are_refused(tmp_path) -> None:
    node, han = Node(), meter_feed(tmp_path)
    feed(node, han)
    stranger = meter_feed(tmp_path, ap_title="2.16.124.113620.1.22.0.123.9999")
    codes = feed(node, stranger)
    assert codes and all(c == UAT for c in codes)  # UAT, for each service
    assert node.services.refused["title"] == len(codes)
    # its context did not replace ours: our meter's next write still makes a sample
    before = len(node.samples)
    assert feed(node, han) == [0, 0, 0]
    assert len(node.samples) == before + 1
    # a display told to follow that other meter takes it, and refuses the default one
    other = Node(meter="2.16.124.113620.1.22.0.123.9999")
    assert feed(other, meter_feed(tmp_path, ap_title="2.16.124.113620.1.22.0.123.9999"))[0] == 0
    assert set(feed(other, han)) == {UAT}


def test_a_secured_display_refuses_a_cleartext_write_even_from_its_meter(tmp_path) -> None:
    node = Node(mode=2)
    clear = meter_feed(tmp_path)
    pending = clear.client.requester.request(clear.services(), clear.called)
    reply = node.responder.receive(pending.data, "link", START)
    assert node.samples == [] and node.services.tables == {}
    assert reply.data is None or all(
        r.response_code != 0 for r in responses(acse.decode(reply.data)))
    secured = meter_feed(tmp_path, security_mode=2, keys=KEYS)
    assert feed(node, secured) == [0] * 11 and len(node.samples) == 1


def _bad_27(han: HanFeed) -> bytes:
    """Table 27 whose first present value selects source 200 (Table 12 has far fewer)."""
    good = han.meter.store.get_bytes(27)
    return bytes([200]) + good[1:]


@pytest.mark.parametrize("alone", [True, False])
def test_a_bad_table_27_never_breaks_the_next_update(tmp_path, alone: bool) -> None:
    node, han = Node(), meter_feed(tmp_path)
    feed(node, han)
    assert len(node.samples) == 1
    requester = han.client.requester
    bad = FullWriteRequest(27, TableData(_bad_27(han)))
    if alone:  # a write of Table 27 by itself (taken: context is proven by the next update)
        assert node.send(requester, [bad], han.called) == [0]
        live = han.services()
    else:  # in the same APDU as the live tables
        live = [bad, *han.services()]
    before = len(node.samples)
    codes = node.send(requester, live, han.called)
    # the first live table that needs Table 27 (23: its check decodes 28 too) is refused
    assert IAR in codes
    assert node.services.refused["undecodable"] == 1
    # the last good context is back: the next update works without the meter resending it
    after = len(node.samples)  # (Table 28 of that APDU decoded with the good 27 again)
    assert feed(node, han) == [0, 0, 0]
    assert before <= after and len(node.samples) == after + 1


def test_undecodable_context_before_any_good_one_is_refused_not_raised(tmp_path) -> None:
    node, han = Node(), meter_feed(tmp_path)
    services = han.services()
    services = [FullWriteRequest(s.table_id, TableData(_bad_27(han))) if s.table_id == 27 else s
                for s in services]
    codes = node.send(han.client.requester, services, han.called)
    assert IAR in codes and node.samples == []
    han._need_context = True
    assert feed(node, han) == [0] * 11 and len(node.samples) == 1


def test_garbage_table_bytes_are_refused(tmp_path) -> None:
    node, han = Node(), meter_feed(tmp_path)
    feed(node, han)
    refused = 0
    for table in (0, 11, 12, 21, 22, 27, 23, 28, 52):
        for data in (b"", b"\xff", bytes(3), b"\xff" * 200):
            services = [FullWriteRequest(table, TableData(data)), *han.services()]
            node.send(han.client.requester, services, han.called)  # never raises
            refused += 1
            assert feed(node, han) == [0, 0, 0], (table, data)
    assert refused == 36
    assert len(node.samples) >= 1 + 36  # every recovery feed made its sample


@pytest.mark.parametrize("option", ["--meter-ap-title", "--ap-title"])
@pytest.mark.parametrize("title", ["garbage", "1.2.x", "2..16"])
def test_a_bad_title_is_a_usage_error_not_a_traceback(tmp_path, option, title) -> None:
    from click.testing import CliRunner

    from c1222.cli.ihd import ihd

    result = CliRunner().invoke(ihd, ["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                                      "--state-dir", str(tmp_path), option, title])
    assert result.exit_code == 2 and "AP title" in result.output, result.output
    assert not (tmp_path / "history.sqlite").exists()  # refused before opening anything
