"""Notices on the display: the meter's MT2 carried by its own feed code to the display node,
and the display's own warnings and the household's power limit through its web app
(docs/ihd.md, "Notices and warnings")."""

from __future__ import annotations

import asyncio
import calendar
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from c1222.codes import ResponseCode
from c1222.ihd.history import History, Sample
from c1222.ihd.notices import SETTINGS_FILE, NoticeBoard, block_crossed
from c1222.ihd.web import create_app
from c1222.tables.access import GROUP_ALL, Principal
from c1222.tables.notice import NOTICE_TABLE, CustomerNotice, NoticeKind, cleared
from c1222.tables.types import TimeDate
from tests.unit.ihd.test_node import START, Node, feed, meter_feed

SEOUL = ZoneInfo("Asia/Seoul")
OPERATOR = Principal(2, GROUP_ALL)
IAR, ONP = ResponseCode.IAR, ResponseCode.ONP


def utc(t: float) -> TimeDate:
    return TimeDate.from_datetime(datetime.utcfromtimestamp(t))


def notice(kind: int = NoticeKind.TEXT, *, start: float = START - 60, end: float = START + 3600,
           notice_id: int = 41, ko: str = "내일 점검이 있습니다", en: str = "Maintenance tomorrow",
           block: int = 0, limit_w: int = 0) -> CustomerNotice:
    return CustomerNotice(notice_id, kind, block, limit_w, utc(start), utc(end), ko, en)


class Board:
    """A display node that hands the notices it decodes to a list."""

    def __init__(self) -> None:
        self.node = Node()
        self.got: list = []
        self.node.services.on_notice = self.got.append


# ------------------------------------------------------------------------------------------
# head-end -> meter -> display: the meter's feed carries MT2


def test_the_feed_carries_the_notice_once_and_again_when_it_changes(tmp_path) -> None:
    board, han = Board(), meter_feed(tmp_path)
    store = han.meter.store
    assert feed(board.node, han) == [0] * 11
    assert board.got == [None]  # the meter's cleared table: no notice
    assert feed(board.node, han) == [0, 0, 0]  # unchanged: not sent again
    store.full_write(NOTICE_TABLE, _bytes(store, notice()), principal=OPERATOR)
    assert feed(board.node, han) == [0] * 4
    shown = board.got[-1]
    assert (shown.id, shown.kind, shown.text_ko, shown.text_en) == (
        41, "text", "내일 점검이 있습니다", "Maintenance tomorrow")
    assert shown.start == START - 60 and shown.end == START + 3600
    assert feed(board.node, han) == [0, 0, 0]
    store.put(NOTICE_TABLE, cleared(store.env))
    assert feed(board.node, han) == [0] * 4 and board.got[-1] is None


def test_a_restarted_display_gets_the_notice_with_the_context(tmp_path) -> None:
    board, han = Board(), meter_feed(tmp_path)
    han.meter.store.put(NOTICE_TABLE, notice(NoticeKind.PEAK_PERIOD, limit_w=1500))
    feed(board.node, han)
    fresh = Board()  # the display restarted: it answers ONP, the meter sends everything
    assert set(feed(fresh.node, han)) == {ONP}
    assert feed(fresh.node, han) == [0] * 11
    assert fresh.got[-1].kind == "peak" and fresh.got[-1].limit_w == 1500


def test_a_notice_that_does_not_decode_is_iar_changes_nothing_and_is_not_resent(tmp_path):
    board, han = Board(), meter_feed(tmp_path)
    store = han.meter.store
    store.put(NOTICE_TABLE, notice())
    feed(board.node, han)
    before = board.node.services.tables[NOTICE_TABLE]
    raw = bytearray(store.get_bytes(NOTICE_TABLE))
    raw[22] = 0xFF  # not UTF-8 (a meter whose table was corrupted; its store would refuse it)
    store._data[NOTICE_TABLE] = bytes(raw)  # the store keeps immutable bytes
    codes = feed(board.node, han)
    assert codes == [IAR, 0, 0, 0] and board.node.services.refused == {"notice": 1}
    assert board.node.services.tables[NOTICE_TABLE] == before and len(board.got) == 1
    assert len(board.node.samples) == 2  # the live tables of that APDU still count
    assert feed(board.node, han) == [0, 0, 0]  # neither the bad notice nor the context again


def test_a_notice_from_another_meter_is_refused(tmp_path) -> None:
    board, han = Board(), meter_feed(tmp_path)
    feed(board.node, han)
    stranger = meter_feed(tmp_path, ap_title="2.16.124.113620.1.22.0.123.9999")
    stranger.meter.store.put(NOTICE_TABLE, notice())
    assert set(feed(board.node, stranger)) == {ResponseCode.UAT}
    assert board.got == [None]


def _bytes(store, value: CustomerNotice) -> bytes:
    from c1222.tables.registry import encode_table

    return encode_table(NOTICE_TABLE, value, store.env)


# ------------------------------------------------------------------------------------------
# the display's web app

NOW = calendar.timegm(datetime(2026, 11, 20, 9, 0).timetuple())  # 18:00 in Seoul


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def call(app, method: str, path: str, **kw) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ihd") as c:
            return await c.request(method, path, **kw)

    return asyncio.run(go())


@pytest.fixture
def parts(tmp_path: Path):
    clock = Clock(NOW)
    history = History(tmp_path, clock=clock)
    board = NoticeBoard(tmp_path)
    yield history, board, create_app(history, clock=clock, notices=board), clock
    history.close()


def _sample(t: float, watts: float, wh: float = 1000.0) -> Sample:
    return Sample(time=t, voltage=220.0, current=watts / 220.0, active_power=watts,
                  apparent_power=watts, power_factor=1.0, energy_wh=wh)


def test_no_notice_no_warning(parts) -> None:
    _history, _board, app, _clock = parts
    body = call(app, "GET", "/api/notices").json()
    assert body == {"time": NOW, "tz": "Asia/Seoul", "notice": None, "power_limit_w": None,
                    "warnings": []}


def test_the_notice_shows_from_its_start_to_its_end(parts) -> None:
    _history, board, app, clock = parts
    from c1222.tables.notice import view

    board.set_notice(view(notice(start=NOW + 10, end=NOW + 70)))
    assert call(app, "GET", "/api/notices").json()["notice"] is None  # not yet
    clock.now = NOW + 10
    shown = call(app, "GET", "/api/notices").json()["notice"]
    assert shown["text_ko"] == "내일 점검이 있습니다" and shown["id"] == 41
    clock.now = NOW + 70
    assert call(app, "GET", "/api/notices").json()["notice"] is None  # ended


def test_the_power_limit_warning_and_its_storage(parts, tmp_path) -> None:
    history, _board, app, clock = parts
    history.add(_sample(NOW - 1, 2300.0))
    r = call(app, "PUT", "/api/power-limit", json={"watts": 2000})
    assert r.status_code == 200 and r.json()["power_limit_w"] == 2000
    assert r.json()["warnings"] == [{"kind": "power_limit", "limit_w": 2000, "power_w": 2300.0}]
    assert json.loads((tmp_path / SETTINGS_FILE).read_text()) == {"power_limit_w": 2000}
    assert NoticeBoard(tmp_path).power_limit_w == 2000  # a restarted display keeps it
    r = call(app, "PUT", "/api/power-limit", json={"watts": 2500})
    assert r.json()["warnings"] == []  # under the limit
    history.add(_sample(NOW, 2600.0))
    assert [w["kind"] for w in call(app, "GET", "/api/notices").json()["warnings"]] == [
        "power_limit"]
    assert call(app, "DELETE", "/api/power-limit").json()["power_limit_w"] is None
    assert NoticeBoard(tmp_path).power_limit_w is None


def test_no_limit_warning_from_a_stale_sample(parts) -> None:
    history, board, app, clock = parts
    board.set_limit(100)
    history.add(_sample(NOW, 2300.0))
    assert call(app, "GET", "/api/notices").json()["warnings"]
    clock.now = NOW + 60  # the meter went quiet a minute ago
    assert history.is_stale()
    assert call(app, "GET", "/api/notices").json()["warnings"] == []


@pytest.mark.parametrize("body", [
    {"watts": 0}, {"watts": 100_001}, {"watts": -5}, {"watts": "2000"}, {"watts": 1500.5},
    {"watts": True}, {"watts": None}, {}, {"watts": 2000, "extra": 1}, [2000], "2000",
    {"watts": 10**40},
])
def test_a_bad_limit_is_422_and_changes_nothing(parts, body) -> None:
    _history, board, app, _clock = parts
    board.set_limit(3000)
    r = call(app, "PUT", "/api/power-limit", json=body)
    assert r.status_code == 422, r.text
    assert board.power_limit_w == 3000


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"watts=2000", b'{"watts": 2000' * 1000])
def test_a_limit_body_that_is_not_json_is_refused(parts, raw) -> None:
    _history, board, app, _clock = parts
    r = call(app, "PUT", "/api/power-limit", content=raw,
             headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and board.power_limit_w is None


def test_a_garbled_settings_file_starts_without_a_limit(tmp_path) -> None:
    for text in ("{", '{"power_limit_w": "x"}', '{"power_limit_w": 0}', "[1]", "\xff"):
        (tmp_path / SETTINGS_FILE).write_text(text)
        assert NoticeBoard(tmp_path).power_limit_w is None


@pytest.mark.parametrize("kwh, month, block, edge", [
    ("199.999", "2026-11", None, None),
    ("200.001", "2026-11", 2, "200"),
    ("400.5", "2026-11", 3, "400"),
    ("300.0", "2026-07", None, None),  # summer: the first block ends at 300
    ("451", "2026-08", 3, "450"),
    ("1000.5", "2026-12", 4, "1000"),  # the super-user tier in winter
])
def test_the_block_warning_follows_the_tariff_blocks(kwh, month, block, edge) -> None:
    from decimal import Decimal

    got = block_crossed(Decimal(kwh), month)
    if block is None:
        assert got is None
    else:
        assert got is not None and (got["block"], got["edge_kwh"]) == (block, edge)
        assert got["month_kwh"] == kwh and got["month"] == month


def test_the_block_warning_from_the_history(parts) -> None:
    history, _board, app, clock = parts
    first = calendar.timegm(datetime(2026, 10, 31, 15, 0).timetuple())  # 1 Nov 00:00 in Seoul
    history.add(_sample(first + 60, 500.0, 10_000.0))
    history.add(_sample(NOW - 86_400, 500.0, 10_000.0 + 190_000))  # (a day apart: a register
    # step over 200 kW would count as a reset)
    assert call(app, "GET", "/api/notices").json()["warnings"] == []
    history.add(_sample(NOW, 500.0, 10_000.0 + 210_000))
    warnings = call(app, "GET", "/api/notices").json()["warnings"]
    assert warnings == [{"kind": "block", "block": 2, "edge_kwh": "200", "month_kwh": "210.000",
                         "month": "2026-11"}]
