"""The in-home display's web app: one page and the small JSON/CSV/SSE API behind it.

``create_app(history)`` returns a FastAPI app; the display process serves it with uvicorn in
its own event loop::

    server = uvicorn.Server(uvicorn.Config(app, host="0.0.0.0", port=8080, log_level="warning"))
    await server.serve()        # server.should_exit = True (or Ctrl-C) stops it

or ``await serve(app, host, port)``, which does the same. Server-sent event streams end
within 0.1 s when the server shuts down (``should_exit``, Ctrl-C) or the browser goes away,
so a shutdown never waits on an open page. Nothing here needs a thread: the handlers only
read :class:`~c1222.ihd.history.History`, which has its own lock.

Endpoints (all GET): ``/`` the page, ``/static/...`` its files, ``/api/live``,
``/api/history?seconds=N``, ``/api/history.csv?seconds=N``, ``/api/summary``,
``/api/month?month=YYYY-MM``, ``/events``, ``/metrics`` (Prometheus, ``c1222.ihd.metrics``).
See docs/ihd.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from c1222.ihd import metrics as ihd_metrics
from c1222.ihd.history import BUCKET, WINDOW, History, Sample
from c1222.transport.http import limit_body, metrics_exposition
from c1222.transport.sse import Streams, close_streams, hook_uvicorn_shutdown, sse

__all__ = ["STATIC", "close_streams", "create_app", "daily", "live", "month_view", "serve",
           "summary"]

STATIC = Path(__file__).resolve().parent / "static"
#: Seconds without a sample before the page says the meter stopped sending.
STALE_AFTER = 5.0
#: How often an event stream looks for a new sample (the history is written once a second).
TICK = 0.1
#: Seconds between comment lines on an idle stream, so proxies and browsers keep it open.
KEEPALIVE = 15.0
#: Days of daily totals in the summary.
SUMMARY_DAYS = 14
#: Seconds of data this month before the month end is projected: under 15 minutes the
#: register's whole-Wh steps make the rate too coarse to multiply by a month.
PROJECTION_MIN_BASIS = 900.0
_NO_CACHE = {"Cache-Control": "no-cache"}


def _kwh(value: float) -> Decimal:
    # to the watt-hour: what is shown is exactly what is billed
    return Decimal(f"{value:.3f}")


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _sample_dict(x: Sample) -> dict[str, float]:
    return {"time": x.time, "voltage": round(x.voltage, 2), "current": round(x.current, 3),
            "active_power": round(x.active_power, 1),
            "apparent_power": round(x.apparent_power, 1),
            "power_factor": round(x.power_factor, 3), "energy_wh": round(x.energy_wh, 1)}


class _Billing:
    """Which month is billed and the tariff calls, in one place (the tariff module is
    imported on first use: the history works without it)."""

    def __init__(self, history: History, tariff_month: date | str | None) -> None:
        self.history = history
        self.fixed = tariff_month

    def month(self, now: float) -> date | str:
        if self.fixed is not None:
            return self.fixed
        return self.history.local_time(now).date().replace(day=1)

    def cost(self, power: float, month_kwh: Decimal, now: float) -> tuple[str | None, str]:
        from c1222.ihd import tariff

        band = tariff.consumption_band(power)
        try:
            # export (negative power) costs nothing: this tariff has no export price
            cost = tariff.cost_per_hour(max(power, 0.0), month_kwh, self.month(now))
        except ValueError:  # TariffNotInForce for a month the table does not cover
            return None, band
        return format(cost, "f"), band


def daily(history: History, billing: _Billing | None = None,
          month: date | None = None) -> list[dict[str, Any]]:
    """Every day kept (up to 400), or those of ``month``: ``{day, kwh, won}``.

    ``won`` is what the day added to its month's bill: the bill for the month's kWh up to
    the end of that day minus the bill up to its start (taxes and fund included; the basic
    charge, owed for the month whatever is used, is in no day). Progressive blocks make a kWh
    dearer late in a month, and that shows. None for a month the tariff table does not cover.
    """
    from c1222.ihd import tariff

    billing = billing or _Billing(history, None)
    out: list[dict[str, Any]] = []
    current: date | None = None
    rates: date | str = date.min
    used = Decimal(0)
    before: Decimal | None = None
    for d in history.daily_totals():
        first = d.day.replace(day=1)
        if first != current:  # a new month: its bill starts from nothing used
            current, used = first, Decimal(0)
            rates = billing.fixed if billing.fixed is not None else first
            try:
                before = tariff.bill(used, rates).total
            except ValueError:
                before = None
        used += _kwh(d.kwh)
        won = None
        if before is not None:
            after = tariff.bill(used, rates).total
            won, before = int(after - before), after
        if month is None or first == month:
            out.append({"day": d.day.isoformat(), "kwh": round(d.kwh, 3), "won": won})
    return out


def _month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"  # (strftime gives "1-01" for year 1)


def month_view(history: History, month: date, billing: _Billing | None = None
               ) -> dict[str, Any]:
    """The ``/api/month`` body: ``month``'s days with their cost, its kWh and bill, and the
    months the history holds (to page through)."""
    from c1222.ihd import tariff

    billing = billing or _Billing(history, None)
    days = daily(history, billing, month)
    kwh = sum((_kwh(d["kwh"]) for d in days), Decimal(0))
    try:
        bill = tariff.bill(kwh, billing.fixed if billing.fixed is not None else month).to_dict()
    except ValueError:
        bill = None
    months = sorted({_month(d.day) for d in history.daily_totals()})
    return {"month": _month(month), "days": days, "kwh": format(kwh, "f"),
            "bill": bill if days else None, "months": months}


def live(history: History, now: float, billing: _Billing | None = None,
         stale_after: float = STALE_AFTER) -> dict[str, Any]:
    """The ``/api/live`` body: the latest sample, whether it is stale and its age."""
    billing = billing or _Billing(history, None)
    x = history.latest()
    # Staleness is judged on the history's receiving clock, not ``now``: in a sped-up
    # simulation the meter's clock (which ``now`` follows) runs ahead of the wall clock.
    age = history.age()
    body: dict[str, Any] = {
        "time": now, "stale": history.is_stale(after=stale_after),
        "age": None if age is None else round(age, 1),
        "sample": None, "band": None, "cost_per_hour": None,
    }
    if x is not None:
        body["sample"] = _sample_dict(x)
        month_kwh = _kwh(history.month_to_date_kwh(now))
        body["cost_per_hour"], body["band"] = billing.cost(x.active_power, month_kwh, now)
    return body


def summary(history: History, now: float, billing: _Billing | None = None,
            stale_after: float = STALE_AFTER, *, days: bool = True) -> dict[str, Any]:
    """The ``/api/summary`` body: energy, the month's bill so far and its projection.
    ``days=False`` leaves ``daily`` empty (the MQTT state once a second needs no days)."""
    from c1222.ihd import tariff

    billing = billing or _Billing(history, None)
    month = billing.month(now)
    local_now = history.local_time(now)
    month_kwh = _kwh(history.month_to_date_kwh(now))
    total = history.energy_total()
    body: dict[str, Any] = {
        "time": now, "tz": history.tz_name, "local_time": local_now.isoformat(),
        "month": tariff.month_start(month).strftime("%Y-%m"),
        "energy_24h_kwh": format(_kwh(history.energy_last_24h()), "f"),
        "energy_total_kwh": None if total is None else format(_kwh(total / 1000.0), "f"),
        "month_kwh": format(month_kwh, "f"),
        "bill": None, "projection": None, "projection_basis": None, "block": None,
        "error": None,
        "daily": daily(history, billing)[-SUMMARY_DAYS:] if days else [],
    }
    try:
        body["bill"] = tariff.bill(month_kwh, month).to_dict()
        # Projected from the data the display has: the rate since its first reading of the
        # month (a display started mid-month knows nothing of the days before it).
        first = history.month_first_reading(now)
        if first is not None:
            basis = max(now - first, 0.0)
            body["projection_basis"] = {"since": history.local_time(first).isoformat(),
                                        "hours": round(basis / 3600.0, 3),
                                        "enough": basis >= PROJECTION_MIN_BASIS}
            if basis >= PROJECTION_MIN_BASIS:
                projected = tariff.projection(month_kwh, local_now,
                                              since=history.local_time(first))
                if billing.fixed is not None:  # projected kWh at the chosen month's rates
                    projected = tariff.bill(projected.kwh, month)
                body["projection"] = projected.to_dict()
        status = tariff.block_status(month_kwh, month)
        body["block"] = {
            "block": status.block, "season": status.season,
            "kwh_to_next_block": _opt(status.kwh_to_next_block),
            "kwh_to_super_user": _opt(status.kwh_to_super_user),
            "marginal_rate": _opt(status.marginal_rate.quantize(Decimal("0.01"))),
            "marginal_rate_with_taxes": _opt(
                status.marginal_rate_with_taxes.quantize(Decimal("0.01"))),
        }
    except ValueError as exc:  # a month the tariff table does not cover: show energy only
        body["error"] = str(exc)
    body["live"] = live(history, now, billing, stale_after)
    return body


def _chunks(lines: Iterator[str], size: int = 1000) -> Iterator[str]:
    # a sync iterator is read through the thread pool one item at a time: hand it ~60 kB
    # pieces, not 17,280 lines
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def _window_start(now: float, seconds: int) -> float:
    """``since`` for the points whose 5-s interval overlaps the last ``seconds``: a full
    window is then exactly seconds / 5 points whatever the phase of ``now``."""
    return now - seconds - BUCKET


def _series(history: History, since: float) -> dict[str, list[Any]]:
    s = history.points(since=since)
    return {"t": s.t, "p": [round(p, 1) for p in s.active_power]}


def create_app(history: History, *, clock: Callable[[], float] = time.time,
               tariff_month: date | str | None = None,
               stale_after: float = STALE_AFTER, collectors: Sequence[Any] = (),
               notices: Any = None) -> FastAPI:
    """The display's web app over ``history``.

    ``clock`` is "now" for windows and the billed month (staleness follows the history's
    receiving clock); ``tariff_month``
    (a date or "YYYY-MM") bills at that month's rates instead of the clock's month, e.g. to
    show a summer bill in a demo. The kWh are always the clock's month to date.
    ``collectors``: more ``prometheus_client`` collectors for ``/metrics`` (the node's, the
    MQTT publisher's; ``c1222.ihd.metrics``).
    ``notices`` (a :class:`c1222.ihd.notices.NoticeBoard`) adds the notice and power-limit
    routes (docs/ihd.md, "Notices and warnings").
    """
    streams = Streams()
    billing = _Billing(history, tariff_month)
    hook_uvicorn_shutdown()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        streams.closing = True  # servers that run the lifespan shutdown first

    app = FastAPI(title="c1222 in-home display", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.c1222_streams = streams  # closed by uvicorn's shutdown (transport.sse)
    app.state.history = history
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    limit_body(app)  # request bodies capped and timed (transport.http)
    registry = ihd_metrics.install(app, history, collectors)  # outermost: 413s counted too
    if notices is not None:
        from c1222.ihd.notices import router

        app.include_router(router(notices, history, clock, billing.month))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_NO_CACHE)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        # the head-end's negotiation (transport.http): OpenMetrics when Prometheus asks for it
        body, content_type = metrics_exposition(registry, request.headers.get("accept"))
        return Response(body, media_type=content_type, headers=_NO_CACHE)

    @app.get("/api/live")
    def api_live() -> JSONResponse:
        return JSONResponse(live(history, clock(), billing, stale_after), headers=_NO_CACHE)

    @app.get("/api/history")
    def api_history(seconds: int = Query(3600, ge=BUCKET, le=WINDOW)) -> JSONResponse:
        now = clock()
        body = {"now": now, "step": BUCKET, **_series(history, _window_start(now, seconds))}
        return JSONResponse(body, headers=_NO_CACHE)

    @app.get("/api/summary")
    def api_summary() -> JSONResponse:
        return JSONResponse(summary(history, clock(), billing, stale_after), headers=_NO_CACHE)

    @app.get("/api/month")
    def api_month(month: str | None = Query(None, pattern=r"^[0-9]{4}-[0-9]{2}$")) -> JSONResponse:
        from c1222.ihd import tariff

        try:
            first = (tariff.month_start(month) if month is not None
                     else history.local_time(clock()).date().replace(day=1))
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return JSONResponse(month_view(history, first, billing), headers=_NO_CACHE)

    @app.get("/api/history.csv")
    def api_history_csv(seconds: int = Query(WINDOW, ge=BUCKET, le=WINDOW)) -> StreamingResponse:
        now = clock()
        stamp = history.local_time(now).strftime("%Y%m%d-%H%M")
        headers = {"Content-Disposition": f'attachment; filename="ihd-history-{stamp}.csv"',
                   **_NO_CACHE}
        return StreamingResponse(_chunks(history.csv(since=_window_start(now, seconds))),
                                 media_type="text/csv; charset=utf-8", headers=headers)

    @app.get("/events")
    async def events(since: float | None = None) -> StreamingResponse:
        """``sample`` events (the live body plus the 5-s points closed since the last event)
        and a ``stale`` event when samples stop. ``since``: the newest point the page holds,
        so no point is lost between its /api/history call and this stream."""

        async def stream() -> AsyncIterator[str]:
            last_t = since
            if last_t is None:
                newest = history.points(since=clock() - 2 * BUCKET).t
                last_t = newest[-1] if newest else clock()
            seq = -1
            stale_sent = False
            idle_since = time.monotonic()
            yield "retry: 2000\n\n"
            while True:
                now = clock()
                if history.seq != seq:
                    seq = history.seq
                    body = live(history, now, billing, stale_after)
                    body["points"] = _series(history, last_t)
                    if body["points"]["t"]:
                        last_t = body["points"]["t"][-1]
                    stale_sent = body["stale"]
                    yield sse("sample", body)
                    idle_since = time.monotonic()
                elif not stale_sent and history.is_stale(after=stale_after):
                    stale_sent = True
                    yield sse("stale", live(history, now, billing, stale_after))
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > KEEPALIVE:
                    yield ": keep-alive\n\n"
                    idle_since = time.monotonic()
                if streams.closing:
                    return
                await asyncio.sleep(TICK)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    return app


async def serve(app: FastAPI, host: str = "0.0.0.0", port: int = 8080) -> None:
    """Serve ``app`` until cancelled or told to stop (Ctrl-C); open streams end first."""
    import uvicorn

    from c1222.transport.http import uvicorn_config

    server = uvicorn.Server(uvicorn_config(app, host, port))
    try:
        await server.serve()
    finally:
        close_streams(app)
