"""The head-end's notice routes against a real head-end and a real meter on 127.0.0.1:
the notice lands in the meter's MT2, a clear empties it, and bad notices are 422 with
nothing sent (docs/headend.md, "Notices to the household")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from c1222.tables.notice import NOTICE_TABLE, view
from tests.unit.headend.test_web import METER, System

URL = f"/api/nodes/{METER}/notice"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    # a meter clock 10 days ahead of the wall: "minutes" count on the meter's clock
    with System(tmp_path_factory.mktemp("notices"), timeout=3.0) as s:
        s.meter_options = {"start_time": 1_790_000_000.0}
        s.start_meter()
        s.wait_registered(METER)
        s.notice_writes = []  # every service write of MT2 the meter served
        s.meters[0].store.on_write(NOTICE_TABLE, lambda *a: s.notice_writes.append(a))
        yield s


def meter_notice(system: System):
    return view(system.meters[0].store.get(NOTICE_TABLE))


def test_a_peak_notice_lands_in_the_meters_table(system: System) -> None:
    body = {"kind": "peak", "limit_kw": 2.5, "minutes": 90, "text_ko": "오후 피크 시간입니다",
            "text_en": "Afternoon peak", "id": 77}
    r = httpx.put(system.url + URL, json=body, timeout=20)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["accepted"] and got["response_codes"] == ["ok", "ok"]
    assert got["notice"]["limit_w"] == 2500 and got["notice"]["id"] == 77
    assert system.notice_writes  # the meter served a write of MT2
    held = meter_notice(system)
    assert held is not None and (held.kind, held.limit_w, held.text_ko) == (
        "peak", 2500, "오후 피크 시간입니다")
    assert held.end - held.start == 90 * 60
    assert abs(held.start - system.meters[0].sim_now()) < 60  # the meter's clock, not ours
    back = httpx.get(system.url + URL, timeout=20).json()
    assert back["active"] and back["notice"]["text_en"] == "Afternoon peak"
    # the request went over C12.22 as Security + Full Write of MT2 (table id 0x0802)
    assert "full_write" in got["exchange"]["request"]["summary"]


def test_a_clear_empties_the_table(system: System) -> None:
    httpx.put(system.url + URL, json={"kind": "text", "text_en": "hello"}, timeout=20)
    assert meter_notice(system) is not None
    r = httpx.delete(system.url + URL, timeout=20)
    assert r.status_code == 200 and r.json()["accepted"] and r.json()["notice"] is None
    assert meter_notice(system) is None
    assert httpx.get(system.url + URL, timeout=20).json() == {
        "ap_title": METER, "meter_time": pytest.approx(system.meters[0].sim_now(), abs=60),
        "notice": None, "active": False}


def test_absolute_times_and_a_block_notice(system: System) -> None:
    body = {"kind": "block", "block": 3, "start": "2026-12-06T09:00:00+09:00",
            "end": "2026-12-06T10:00:00Z", "text_ko": "3단계에 들어섰습니다"}
    r = httpx.put(system.url + URL, json=body, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["notice"]["start"] == "2026-12-06T00:00:00Z"
    assert r.json()["notice"]["end"] == "2026-12-06T10:00:00Z"
    assert meter_notice(system).block == 3


LONG_KO = "가" * 81  # 243 bytes of UTF-8


@pytest.mark.parametrize("body", [
    {"kind": "text", "text_en": "x" * 241},
    {"kind": "text", "text_ko": LONG_KO},
    {"kind": "text"},
    {"kind": "text", "text_en": ""},
    {"kind": "text", "text_en": "bell\u0007"},
    {"kind": "text", "text_en": "nul\u0000"},
    {"kind": "text", "text_en": "bidi\u202e"},
    {"kind": "text", "text_en": "ok", "start": "2026-12-06T10:00:00Z",
     "end": "2026-12-06T09:59:59Z"},
    {"kind": "text", "text_en": "ok", "start": "2026-12-06T10:00:00Z",
     "end": "2026-12-06T10:00:00Z"},
    {"kind": "text", "text_en": "ok", "end": "2026-12-06T10:00:00Z", "minutes": 5},
    {"kind": "text", "text_en": "ok", "minutes": 0},
    {"kind": "text", "text_en": "ok", "minutes": 43_201},
    {"kind": "text", "text_en": "ok", "minutes": "5"},
    {"kind": "text", "text_en": "ok", "start": "9999-12-31T23:59:00Z"},  # past the calendar
    {"kind": "text", "text_en": "ok", "start": "2300-01-01T00:00:00Z"},  # past TM_FORMAT 2
    {"kind": "text", "text_en": "ok", "start": "0001-01-01T00:00:00+14:00"},
    {"kind": "text", "text_en": "ok", "start": "yesterday"},
    {"kind": "text", "text_en": "ok", "id": 0},
    {"kind": "text", "text_en": "ok", "id": 2**32},
    {"kind": "text", "text_en": "ok", "block": 2},
    {"kind": "text", "text_en": "ok", "limit_kw": 2},
    {"kind": "block"},
    {"kind": "block", "block": 0},
    {"kind": "block", "block": 5},
    {"kind": "peak"},
    {"kind": "peak", "limit_kw": 0},
    {"kind": "peak", "limit_kw": -1},
    {"kind": "peak", "limit_kw": 1001},
    {"kind": "peak", "limit_kw": 0.0001},
    {"kind": "peak", "limit_kw": "2"},
    {"kind": "peak", "limit_kw": True},
    {"kind": "alarm", "text_en": "ok"},
    {"kind": "text", "text_en": 5},
    {"kind": "text", "text_en": "ok", "colour": "red"},
    [], "text", None,
])
def test_bad_notices_are_422_and_nothing_is_sent(system: System, body) -> None:
    before, writes = meter_notice(system), len(system.notice_writes)
    r = httpx.put(system.url + URL, json=body, timeout=20)
    assert r.status_code == 422, (body, r.status_code, r.text)
    # (Table 0 and the clock may have been read for the defaults; no write reached the meter)
    assert meter_notice(system) == before and len(system.notice_writes) == writes


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe\x00", b'{"kind": "text", "text_en": NaN}',
                                 b'{"kind": "peak", "limit_kw": Infinity}',
                                 b'{"kind": "text", "text_en": "\\ud800"}'])
def test_bodies_that_are_not_json_or_not_text_are_refused(system: System, raw: bytes) -> None:
    r = httpx.put(system.url + URL, content=raw, headers={"Content-Type": "application/json"},
                  timeout=20)
    assert r.status_code in (400, 422), (raw, r.status_code, r.text)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "GET"])
@pytest.mark.parametrize("title", ["2.16.124.113620.1.22.0.123.9999", "not-a-title", "1.2"])
def test_a_notice_to_an_unknown_meter_is_404(system: System, method: str, title: str) -> None:
    r = httpx.request(method, f"{system.url}/api/nodes/{title}/notice",
                      json={"kind": "text", "text_en": "hi"} if method == "PUT" else None,
                      timeout=20)
    assert r.status_code == 404, r.text


def test_a_user_that_may_not_write_it_is_refused_by_the_meter(tmp_path: Path) -> None:
    # the head-end logged in as the meter's reader (user 1): the meter answers ISC
    with System(tmp_path, timeout=3.0, user_id=1, password="READER") as s:
        s.start_meter()
        s.wait_registered(METER)
        r = httpx.put(s.url + URL, json={"kind": "text", "text_en": "hi"}, timeout=20)
        assert r.status_code == 200 and r.json()["accepted"] is False
        assert r.json()["response_codes"] == ["ok", "isc"]
        assert view(s.meters[0].store.get(NOTICE_TABLE)) is None


def test_the_routes_are_in_the_openapi_document(system: System) -> None:
    paths = httpx.get(system.url + "/openapi.json", timeout=20).json()["paths"]
    assert set(paths["/api/nodes/{ap_title}/notice"]) == {"put", "delete", "get"}


def test_meter_clock_default_start(system: System) -> None:
    r = httpx.put(system.url + URL, json={"kind": "text", "text_ko": "안녕하세요"}, timeout=20)
    start = dt.datetime.fromisoformat(r.json()["notice"]["start"].replace("Z", "+00:00"))
    assert abs(start.timestamp() - system.meters[0].sim_now()) < 60
    assert start.timestamp() > 1_789_000_000  # the meter's clock, far from the wall's
