"""The display's web app: every endpoint through the ASGI interface, the event stream and the
shutdown on a real uvicorn."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from c1222.ihd import tariff
from c1222.ihd.history import BUCKET, POINTS_24H, History, Sample
from c1222.ihd.web import close_streams, create_app

SEOUL = ZoneInfo("Asia/Seoul")
#: 2026-11-20 18:00:00 KST: the month so far is 19.75 days.
NOW = int(datetime(2026, 11, 20, 18, 0, tzinfo=SEOUL).timestamp())
NOVEMBER_1 = int(datetime(2026, 11, 1, tzinfo=SEOUL).timestamp())


class AsgiClient:
    """Calls the app through httpx's ASGI transport (no server, no thread)."""

    def __init__(self, app) -> None:
        self.app = app

    def __enter__(self) -> AsgiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get(self, path: str, params: dict | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ihd") as c:
                return await c.get(path, params=params)

        return asyncio.run(call())


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(t: float, wh: float, watts: float = 800.0) -> Sample:
    return Sample(time=t, voltage=221.5, current=abs(watts) / 0.95 / 221.5, active_power=watts,
                  apparent_power=abs(watts) / 0.95, power_factor=0.95, energy_wh=wh)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def history(tmp_path: Path, clock: Clock):
    h = History(tmp_path, clock=clock)
    yield h
    h.close()


@pytest.fixture
def loaded(history: History, clock: Clock) -> History:
    """November so far: one sample a minute from the 1st, then 26 h at one per 5 s, ending
    at NOW; 600 W throughout, so the month to date is 0.6 kWh x 474 h = 284.4 kWh."""
    wh = 10_000.0
    t = float(NOVEMBER_1)
    dense = NOW - 26 * 3600
    with history.batch():
        while t < NOW:
            history.add(sample(t, wh, 600.0))
            step = 60.0 if t < dense else BUCKET
            wh += 600.0 * step / 3600
            t += step
        history.add(sample(NOW - 0.5, wh - 600.0 * 4.5 / 3600, 600.0))
    return history


@pytest.fixture
def client(history: History, clock: Clock):
    with AsgiClient(create_app(history, clock=clock)) as c:
        yield c


# ------------------------------------------------------------------------------------------
# the page and its files


def test_the_page_and_its_files_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for testid in ("voltage", "current", "active-power", "apparent-power", "power-factor",
                   "bill-total", "stale-notice", "chart", "csv-link", "lang-toggle"):
        assert f'data-testid="{testid}"' in r.text, testid
    # everything from the display itself: no CDN
    assert not re.search(r'(src|href)="(https?:)?//', r.text)
    for path in ("/static/app.js", "/static/style.css", "/static/i18n.js",
                 "/static/vendor/uPlot.iife.min.js", "/static/vendor/uPlot.min.css",
                 "/static/vendor/LICENSE"):
        assert client.get(path).status_code == 200, path
    assert "MIT" in client.get("/static/vendor/LICENSE").text


def test_every_label_has_both_languages(client):
    text = client.get("/static/i18n.js").text
    ko, en = text.split("\n  en: {")

    def keys(part: str) -> set[str]:
        return set(re.findall(r"^ {4}(\w+):", part, re.M))

    assert keys(ko) == keys(en) and len(keys(en)) > 40
    for key in ("voltage", "current", "active_power", "apparent_power", "power_factor", "bill"):
        assert key in keys(ko)
    assert '"전압"' in ko and '"Voltage"' in en


# ------------------------------------------------------------------------------------------
# /api/live


def test_live_without_a_sample_is_stale(client):
    body = client.get("/api/live").json()
    assert body == {"time": NOW, "stale": True, "age": None, "sample": None, "band": None,
                    "cost_per_hour": None}


def test_live_has_the_latest_sample_and_goes_stale_after_5_s(client, history, clock):
    history.add(sample(NOW - 3, 5000.0, 1700.0))
    history.add(sample(NOW - 2, 5000.5, 1720.0))
    clock.now = NOW + 4.9
    body = client.get("/api/live").json()
    assert body["stale"] is False and body["age"] == 4.9
    assert body["sample"] == {"time": NOW - 2, "voltage": 221.5, "current": 8.174,
                              "active_power": 1720.0, "apparent_power": 1810.5,
                              "power_factor": 0.95, "energy_wh": 5000.5}
    assert body["band"] == "high" == tariff.consumption_band(1720.0)
    month_kwh = Decimal(f"{history.month_to_date_kwh(clock.now):.3f}")
    assert Decimal(body["cost_per_hour"]) == tariff.cost_per_hour(1720.0, month_kwh, "2026-11")
    clock.now = NOW + 5.1
    assert client.get("/api/live").json()["stale"] is True


def test_live_when_exporting_costs_nothing(client, history):
    history.add(sample(NOW, 5000.0, -900.0))
    body = client.get("/api/live").json()
    assert body["band"] == "low" and Decimal(body["cost_per_hour"]) == 0


# ------------------------------------------------------------------------------------------
# /api/history and its CSV


def test_history_is_compact_arrays_of_the_window(client, loaded, clock):
    body = client.get("/api/history", params={"seconds": 900}).json()
    assert set(body) == {"now", "step", "t", "p"}
    assert body["step"] == 5
    # the bucket in progress (NOW - 5, holding NOW - 0.5) is not a point yet
    assert body["t"][-1] == NOW - 10 and len(body["t"]) == 900 // 5 - 1
    loaded.add(sample(NOW + 0.2, loaded.energy_total() + 0.1, 600.0))  # closes it
    clock.now = NOW + 1.3
    body = client.get("/api/history", params={"seconds": 900}).json()
    assert len(body["t"]) == len(body["p"]) == 900 // 5
    assert body["t"] == sorted(body["t"]) and body["t"][-1] == NOW - 5
    assert set(body["p"]) == {600.0}
    day = client.get("/api/history", params={"seconds": 86_400}).json()
    assert len(day["t"]) == POINTS_24H
    # without `seconds`: the last hour
    assert len(client.get("/api/history").json()["t"]) == 3600 // 5
    raw = client.get("/api/history", params={"seconds": 10}).content
    assert b" " not in raw  # compact JSON


@pytest.mark.parametrize("seconds", ["0", "86401", "-5", "soon"])
def test_history_refuses_a_window_out_of_range(client, seconds):
    assert client.get("/api/history", params={"seconds": seconds}).status_code == 422
    assert client.get("/api/history.csv", params={"seconds": seconds}).status_code == 422


def test_csv_export(client, loaded):
    loaded.add(sample(NOW, loaded.energy_total() + 0.1, 600.0))  # closes the bucket NOW - 5
    r = client.get("/api/history.csv", params={"seconds": 600})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == (
        'attachment; filename="ihd-history-20261120-1800.csv"')
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["unix_time", "interval_start", "voltage_v", "current_a",
                       "active_power_w", "apparent_power_va", "power_factor", "energy_wh"]
    assert len(rows) == 1 + 600 // 5
    last = rows[-1]
    assert last[0] == str(NOW - 5) and last[1] == "2026-11-20T17:59:55+09:00"
    assert float(last[4]) == 600.0 and float(last[6]) == 0.95
    # the whole day by default
    assert len(client.get("/api/history.csv").text.splitlines()) == 1 + POINTS_24H


# ------------------------------------------------------------------------------------------
# /api/summary


def test_summary_bills_the_month_to_date_with_the_tariff_engine(client, loaded, clock):
    body = client.get("/api/summary").json()
    month_kwh = Decimal(body["month_kwh"])
    assert month_kwh == Decimal(f"{loaded.month_to_date_kwh(NOW):.3f}")
    assert abs(month_kwh - Decimal("284.4")) < Decimal("0.01")  # 600 W for 474 h
    assert body["month"] == "2026-11" and body["tz"] == "Asia/Seoul"
    expected = tariff.bill(month_kwh, "2026-11")
    assert body["bill"] == expected.to_dict()
    for part in ("basic", "energy", "climate", "fuel", "vat", "fund", "total"):
        assert body["bill"][part] == int(getattr(expected, part))
    now = datetime.fromtimestamp(NOW, SEOUL)
    first = datetime.fromtimestamp(NOVEMBER_1, SEOUL)  # the display's first reading
    assert body["projection"] == tariff.projection(month_kwh, now, since=first).to_dict()
    assert body["projection"] == tariff.projection(month_kwh, now).to_dict()  # from the 1st
    assert body["projection_basis"] == {"since": first.isoformat(), "hours": 474.0,
                                        "enough": True}
    status = tariff.block_status(month_kwh, "2026-11")
    assert body["block"]["block"] == status.block == 2
    assert Decimal(body["block"]["kwh_to_next_block"]) == status.kwh_to_next_block
    assert Decimal(body["energy_24h_kwh"]) == Decimal("14.400")  # 600 W x 24 h
    assert Decimal(body["energy_total_kwh"]) == (
        Decimal(f"{loaded.energy_total() / 1000:.3f}"))
    assert body["live"]["band"] == "medium"
    assert Decimal(body["live"]["cost_per_hour"]) == tariff.cost_per_hour(600, month_kwh,
                                                                          "2026-11")
    assert [d["day"] for d in body["daily"]][-1] == "2026-11-20"
    assert len(body["daily"]) == 14
    assert body["error"] is None


def test_summary_at_another_months_rates(history, loaded, clock):
    with AsgiClient(create_app(history, clock=clock, tariff_month="2026-08")) as c:
        body = c.get("/api/summary").json()
    month_kwh = Decimal(body["month_kwh"])
    assert body["month"] == "2026-08"
    assert body["bill"] == tariff.bill(month_kwh, "2026-08").to_dict()
    assert body["bill"]["season"] == "summer" and body["bill"]["block"] == 1


def test_summary_for_a_month_without_a_tariff_still_shows_energy(tmp_path):
    then = Clock(datetime(2021, 3, 5, tzinfo=SEOUL).timestamp())
    with History(tmp_path, clock=then) as h:
        h.add(sample(then.now - 10, 100.0))
        h.add(sample(then.now - 1, 101.0))
        with AsgiClient(create_app(h, clock=then)) as c:
            body = c.get("/api/summary").json()
            assert body["bill"] is None and body["projection"] is None
            assert "2021-03" in body["error"] or body["error"]
            assert body["month_kwh"] == "0.001"
            assert c.get("/api/live").json()["cost_per_hour"] is None


def test_summary_of_an_empty_history(client):
    body = client.get("/api/summary").json()
    assert body["month_kwh"] == "0.000" and body["energy_total_kwh"] is None
    assert body["bill"]["total"] == int(tariff.bill(0, "2026-11").total)
    assert body["live"]["stale"] is True


# ------------------------------------------------------------------------------------------
# /events


def parse_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_events_start_with_the_present_state_and_end_when_closed(history, clock):
    history.add(sample(NOW - 1, 5000.0))
    app = create_app(history, clock=clock)
    close_streams(app)  # the stream sends what it has and ends
    with AsgiClient(app) as c:
        r = c.get("/events")
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.startswith("retry: 2000\n\n")
    [(name, body)] = parse_events(r.text)
    assert name == "sample"
    assert body["sample"]["energy_wh"] == 5000.0 and body["stale"] is False
    assert body["points"] == {"t": [], "p": []}


def test_events_send_the_points_after_since(history, clock):
    for k in range(20):
        history.add(sample(NOW - 20 + k, 5000.0 + k))
    app = create_app(history, clock=clock)
    close_streams(app)
    with AsgiClient(app) as c:
        [(_, body)] = parse_events(c.get("/events", params={"since": NOW - 15}).text)
    assert body["points"]["t"] == [NOW - 10]  # NOW - 5 is still being filled


async def _serve(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}"


async def _events(response: httpx.Response):
    block: list[str] = []
    async for line in response.aiter_lines():
        if line:
            block.append(line)
            continue
        fields = dict(x.split(": ", 1) for x in block if ": " in x and not x.startswith(":"))
        block = []
        if "event" in fields:
            yield fields["event"], json.loads(fields["data"])


async def _drain(events) -> list:
    return [e async for e in events]


def test_events_on_uvicorn_push_each_sample_then_stale_and_shutdown_does_not_hang(tmp_path):
    """Real time: about 4 s. A plain uvicorn.Server must stop with a stream still open."""

    async def main() -> None:
        history = History(tmp_path)
        app = create_app(history, stale_after=1.0)
        server, task, url = await _serve(app)
        t0 = (time.time() // BUCKET) * BUCKET + 1000  # meter time, ahead of ours is fine

        async def feeder() -> None:
            for k in range(12):  # 12 samples at 5 a second: buckets close as they go
                history.add(sample(t0 + k, 7000.0 + k, 500.0 + k))
                await asyncio.sleep(0.2)

        seen: list[dict] = []
        points: list[int] = []
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            async with client.stream("GET", "/events") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                feed = asyncio.create_task(feeder())
                # keep a reference: a dropped generator is closed, which closes the response
                # and would let the server stop even without the shutdown hook
                events = _events(r)
                async for name, body in events:
                    if name == "sample" and body["sample"] is not None:
                        seen.append(body)
                        points += body["points"]["t"]
                    if name == "stale":
                        assert body["stale"] is True and body["sample"]["energy_wh"] == 7011.0
                        break
                await feed
                # a page is still connected: shutting down must end its stream, not wait for it
                server.should_exit = True
                rest = await asyncio.wait_for(_drain(events), 3)
                await asyncio.wait_for(task, 3)
                assert [name for name, _ in rest] == []
        history.close()
        powers = [b["sample"]["active_power"] for b in seen]
        assert len(powers) >= 10 and powers == sorted(set(powers))  # each new sample, in order
        assert powers[-1] == 511.0
        assert points == [t0, t0 + 5]  # the closed buckets, each once

    asyncio.run(main())


def test_a_browser_going_away_ends_its_stream(tmp_path):
    async def main() -> None:
        history = History(tmp_path)
        history.add(sample(time.time(), 1.0))
        server, task, url = await _serve(create_app(history))
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            async with client.stream("GET", "/events") as r:
                async for name, _ in _events(r):
                    assert name == "sample"
                    break
            assert len(server.server_state.tasks) == 1
        for _ in range(50):  # the stream notices the disconnect and its task ends
            if not server.server_state.tasks:
                break
            await asyncio.sleep(0.05)
        assert not server.server_state.tasks
        server.should_exit = True
        await asyncio.wait_for(task, 3)
        history.close()

    asyncio.run(main())


def test_a_display_started_mid_month_projects_from_its_own_data(client, history, clock):
    # started on the 20th at 17:00 (issue: "₩1,020 (0 kWh)" while drawing 210 W)
    start = NOW - 3600
    with history.batch():
        for k in range(0, 3601, 60):  # one sample a minute at 210 W
            history.add(sample(start + k, 1000.0 + 210.0 * k / 3600, 210.0))
    clock.now = start + 3600
    body = client.get("/api/summary").json()
    assert Decimal(body["month_kwh"]) == Decimal("0.210")
    # 210 W over a 30-day month is 151.2 kWh
    assert Decimal(body["projection"]["kwh"]) == Decimal("151.200")
    assert body["projection_basis"] == {
        "since": datetime.fromtimestamp(start, SEOUL).isoformat(), "hours": 1.0,
        "enough": True}
    assert body["projection"] == tariff.projection(
        Decimal("0.210"), datetime.fromtimestamp(clock.now, SEOUL),
        since=datetime.fromtimestamp(start, SEOUL)).to_dict()


def test_no_projection_from_less_than_15_minutes_of_data(client, history, clock):
    history.add(sample(NOW - 600, 1000.0, 210.0))
    history.add(sample(NOW, 1035.0, 210.0))
    clock.now = NOW
    body = client.get("/api/summary").json()
    assert body["projection"] is None and body["bill"] is not None
    assert body["projection_basis"]["enough"] is False
    assert body["projection_basis"]["hours"] == pytest.approx(600 / 3600, abs=1e-3)


# ------------------------------------------------------------------------------------------
# days with their cost, and the month view


def _days(history: History, first_day: datetime, kwh_per_day: list[float]) -> None:
    """One sample an hour per day at the power that makes each day's kWh."""
    wh, t = 50_000.0, first_day.timestamp()
    with history.batch():
        for kwh in kwh_per_day:
            for _ in range(24):
                history.add(sample(t, wh, kwh * 1000 / 24))
                wh += kwh * 1000 / 24
                t += 3600
        history.add(sample(t, wh, 0.0))


def test_each_day_costs_what_it_added_to_the_months_bill(client, history, clock):
    _days(history, datetime(2026, 10, 20, tzinfo=SEOUL), [10.0] * 25)  # Oct 20 .. Nov 13
    clock.now = datetime(2026, 11, 14, 12, tzinfo=SEOUL).timestamp()
    body = client.get("/api/month", params={"month": "2026-11"}).json()
    assert [d["day"] for d in body["days"]] == [f"2026-11-{k:02d}" for k in range(1, 15)]
    assert Decimal(body["kwh"]) == Decimal("130.000")  # 13 days x 10 kWh (the 14th: none)
    expected = tariff.bill(Decimal("130.000"), "2026-11")
    assert body["bill"] == expected.to_dict()
    # the days add up to the bill less the basic charge, which no day owes
    assert sum(d["won"] for d in body["days"]) == expected.total - tariff.bill(0, "2026-11").total
    assert body["days"][0]["won"] == tariff.bill(10, "2026-11").total - \
        tariff.bill(0, "2026-11").total
    assert body["months"] == ["2026-10", "2026-11"]
    october = client.get("/api/month", params={"month": "2026-10"}).json()
    assert len(october["days"]) == 12 and Decimal(october["kwh"]) == Decimal("120.000")
    assert client.get("/api/month").json()["month"] == "2026-11"  # default: the clock's month
    summary = client.get("/api/summary").json()
    assert summary["daily"][-1] == body["days"][-1] and "won" in summary["daily"][0]


def test_a_kwh_costs_more_in_a_later_block(client, history, clock):
    clock.now = datetime(2026, 11, 30, 12, tzinfo=SEOUL).timestamp()
    _days(history, datetime(2026, 11, 1, tzinfo=SEOUL), [10.0] * 29)  # block 2 from the 21st
    won = [d["won"] for d in client.get("/api/month").json()["days"]]
    # the same 10 kWh cost more in block 2 (the first day also reaches the minimum charge)
    assert len(won) == 30 and won[5] < won[25], won  # (the 30th: no use yet)


@pytest.mark.parametrize("month", ["2026-13", "26-11", "2026-1", "x", "2026-11-01", "0000-01",
                                   "2026-00", "２０２６-11", "2026-11\n", "", "-001-01"])
def test_a_bad_month_is_refused(client, month):
    assert client.get("/api/month", params={"month": month}).status_code == 422


@pytest.mark.parametrize("month", ["0001-01", "1900-01", "9999-12"])
def test_a_month_without_data_is_empty(client, month):
    body = client.get("/api/month", params={"month": month}).json()
    assert body["month"] == month and body["days"] == [] and body["bill"] is None


def test_a_year_of_days_and_more_is_kept_and_paged_by_month(client, history, clock):
    clock.now = datetime(2026, 11, 24, 12, tzinfo=SEOUL).timestamp()
    _days(history, datetime(2025, 10, 1, tzinfo=SEOUL), [3.0] * 420)
    body = client.get("/api/month").json()
    assert len(body["months"]) >= 13  # at least a year back to page through
    days = [d for m in body["months"]
            for d in client.get("/api/month", params={"month": m}).json()["days"]]
    assert len(days) == 400  # history.KEEP_DAYS
