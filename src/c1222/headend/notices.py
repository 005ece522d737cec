"""Notices to a household: the head-end's routes that write a meter's MT2 (docs/headend.md).

The notice (a tariff block reached, a peak period with a requested limit, or free text, in
Korean and English, with its start and end) is written to the meter's manufacturer table MT2
CUSTOMER_NOTICE_TBL (:mod:`c1222.tables.notice`) with the head-end's Security service and a
Full Write; the meter keeps it and passes it to its in-home display on its once-a-second feed.

* ``PUT /api/nodes/{ap_title}/notice`` sends one (body: :class:`NoticeIn`);
* ``DELETE /api/nodes/{ap_title}/notice`` clears the meter's table;
* ``GET /api/nodes/{ap_title}/notice`` reads it back.

Times: ``start`` defaults to the meter's own clock (Table 52, read in the same call), and
``minutes`` counts on that clock, so a notice to a sped-up simulated meter lasts its minutes
of simulated time; ``start``/``end`` given as ISO 8601 are absolute (no zone: UTC).
Validation is strict (422, the input never echoed): texts at most 240 bytes of UTF-8 with no
control characters, at least one text for a free-text notice, a block 1-4 only for a
block notice, a limit only for a peak notice, an end after the start, nothing unknown.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from c1222.codec.services import (
    FullReadRequest, FullWriteRequest, ReadResponse, Response, TableData,
)
from c1222.errors import C1222Error, DecodeError, LocalProtocolError
from c1222.tables.notice import (
    MAX_BLOCK, NOTICE_TABLE, CustomerNotice, NoticeKind, cleared, text_problem, view,
)
from c1222.tables.readings import meter_time
from c1222.tables.registry import decode_table, encode_table, make_env
from c1222.tables.types import TimeDate
from c1222.headend.params import registered_node

if TYPE_CHECKING:
    from c1222.headend.server import Exchange, HeadEnd

#: Longest notice, in minutes of the meter's clock (30 days).
MAX_MINUTES = 30 * 24 * 60
#: Largest requested limit, kW (a household supply is at most a few tens of kW).
MAX_LIMIT_KW = 1000.0
KINDS = {"block": NoticeKind.BLOCK_REACHED, "peak": NoticeKind.PEAK_PERIOD,
         "text": NoticeKind.TEXT}


class NoticeIn(BaseModel):
    """A notice to the household (docs/headend.md, "Notices to the household")."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["block", "peak", "text"] = Field(
        description="block: a tariff block reached; peak: a peak period with a requested "
                    "limit; text: free text")
    text_ko: str = Field("", description="Korean text, at most 240 bytes of UTF-8")
    text_en: str = Field("", description="English text, at most 240 bytes of UTF-8")
    block: int | None = Field(None, ge=1, le=MAX_BLOCK,
                              description="block: the block reached (4: super-user)")
    limit_kw: float | None = Field(None, gt=0, le=MAX_LIMIT_KW,
                                   description="peak: the requested limit of present power, kW")
    # (strict=False: the body arrives parsed, so an ISO 8601 string must be converted)
    start: dt.datetime | None = Field(None, strict=False,
                                      description="from (ISO 8601; no zone: UTC); default: "
                                                  "the meter's clock now")
    end: dt.datetime | None = Field(None, strict=False,
                                    description="until (ISO 8601); or `minutes`")
    minutes: int | None = Field(None, ge=1, le=MAX_MINUTES,
                                description="duration on the meter's clock (default 60)")
    id: int | None = Field(None, ge=1, le=0xFFFFFFFF,
                           description="the notice's id (default: from the head-end's clock)")

    @field_validator("text_ko", "text_en")
    @classmethod
    def _text(cls, value: str) -> str:
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("an ISO 8601 date and time, as text")  # not a Unix number
        return value

    @field_validator("limit_kw", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # strict mode takes a JSON integer as a number of kW too
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NoticeIn:
        if (self.kind == "block") != (self.block is not None):
            raise ValueError("`block` is given with kind block, and only then")
        if (self.kind == "peak") != (self.limit_kw is not None):
            raise ValueError("`limit_kw` is given with kind peak, and only then")
        if self.kind == "peak" and round(self.limit_kw * 1000) < 1:  # type: ignore[operator]
            raise ValueError("`limit_kw` under 1 W")
        if self.kind == "text" and not (self.text_ko or self.text_en):
            raise ValueError("a text notice needs text_ko or text_en")
        if self.end is not None and self.minutes is not None:
            raise ValueError("`end` or `minutes`, not both")
        if self.end is not None and self.start is not None and _utc(self.end) <= _utc(self.start):
            raise ValueError("`end` is not after `start`")
        return self


def _utc(moment: dt.datetime) -> dt.datetime:
    """A naive UTC datetime (no zone given: UTC); ValueError when it has none (year 1 with a
    zone east of UTC)."""
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
        except OverflowError:
            raise ValueError("a time outside the calendar") from None
    return moment


def _time_date(moment: dt.datetime | None) -> TimeDate | None:
    return None if moment is None else TimeDate.from_datetime(moment.replace(microsecond=0))


def build(body: NoticeIn, meter_now: float | None, notice_id: int) -> CustomerNotice:
    """The MT2 value of ``body``; ``meter_now`` is the meter's clock (None: it has none).
    ValueError when the times do not make a notice (an end not after the start)."""
    start = _utc(body.start) if body.start is not None else (
        None if meter_now is None else
        dt.datetime.fromtimestamp(int(meter_now), dt.timezone.utc).replace(tzinfo=None))
    if body.end is not None:
        end = _utc(body.end)
    elif start is not None:
        try:
            end = start + dt.timedelta(minutes=body.minutes or 60)
        except OverflowError:
            raise ValueError("the end falls outside the calendar") from None
    else:
        end = None
    limit_w = round(body.limit_kw * 1000) if body.limit_kw is not None else 0
    return CustomerNotice(notice_id, KINDS[body.kind], body.block or 0, limit_w,
                          _time_date(start), _time_date(end), body.text_ko, body.text_en)


def router(headend: HeadEnd) -> APIRouter:
    """The notice routes over a started head-end (included by ``create_app``)."""
    from c1222.headend.web import ErrorBody, NoAnswer, exchange_json

    api = APIRouter(tags=["notices"])
    refusals: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody, "description": "the node is not registered"},
        422: {"model": ErrorBody, "description": "bad parameters"},
        502: {"model": NoAnswer, "description": "the meter did not answer (or not "
                                                "intelligibly)"}}

    def registered(ap_title: str) -> str:
        return registered_node(headend, ap_title).ap_title

    async def context(title: str, clock: bool) -> tuple[Any, float | None]:
        """The meter's Table 0 as an env (and its clock), read with the head-end's Security."""
        try:
            tables = await headend._tables(title, (0, 52) if clock else (0,))
            env = make_env(decode_table(0, tables[0]))
            now = meter_time(tables) if clock else None
        except (C1222Error, OSError) as exc:
            raise HTTPException(502, f"reading the meter's Table 0 and clock: "
                                     f"{type(exc).__name__}: {exc or 'time-out'}") from None
        return env, now

    async def write(title: str, data: bytes, started: float) -> tuple[Exchange, dict[str, Any]]:
        exchange = await headend.call(title, [headend._security(),
                                              FullWriteRequest(NOTICE_TABLE, TableData(data))])
        body = exchange_json(exchange, "notice", title, time.monotonic() - started)
        if exchange.response is None:
            body["detail"] = body["error"] or "no response"
            raise _NoAnswer(NoAnswer.model_validate(body).model_dump(mode="json", by_alias=True))
        return exchange, body

    @api.put("/api/nodes/{ap_title}/notice", summary="Send a notice to the household",
             responses=refusals)
    async def put_notice(
        ap_title: Annotated[str, PathParam(description="dotted AP title of a registered meter")],
        notice: Annotated[NoticeIn, Body(description="the notice")],
    ) -> Any:
        """Write the notice to the meter's MT2 (Security, then Full Write); the meter passes
        it to its display. 200 also when the meter refused it (`accepted` false, the code in
        `response_codes`, e.g. `isc` for a user not allowed to write it)."""
        title = registered(ap_title)
        started = time.monotonic()
        env, now = await context(title, clock=notice.start is None)
        notice_id = notice.id if notice.id is not None else (int(time.time()) & 0xFFFFFFFF or 1)
        try:
            value = build(notice, now, notice_id)
            data = encode_table(NOTICE_TABLE, value, env)
        except (ValueError, LocalProtocolError) as exc:  # e.g. a year the meter cannot hold
            raise HTTPException(422, [{"loc": ["body"], "msg": _reason(exc),
                                       "type": "value_error"}]) from None
        try:
            _, body = await write(title, data, started)
        except _NoAnswer as exc:
            return JSONResponse(exc.body, status_code=502)
        shown = view(value)
        return {"ap_title": title, "accepted": body["response_codes"] == ["ok", "ok"],
                "notice": None if shown is None else _iso(shown.to_dict()),
                "response_codes": body["response_codes"], "exchange": body}

    @api.delete("/api/nodes/{ap_title}/notice", summary="Clear the household's notice",
                responses=refusals)
    async def delete_notice(
        ap_title: Annotated[str, PathParam(description="dotted AP title of a registered meter")],
    ) -> Any:
        """Write a cleared MT2 (no notice): the display takes its banner down."""
        title = registered(ap_title)
        started = time.monotonic()
        env, _ = await context(title, clock=False)
        try:
            _, body = await write(title, encode_table(NOTICE_TABLE, cleared(env), env), started)
        except _NoAnswer as exc:
            return JSONResponse(exc.body, status_code=502)
        return {"ap_title": title, "accepted": body["response_codes"] == ["ok", "ok"],
                "notice": None, "response_codes": body["response_codes"], "exchange": body}

    @api.get("/api/nodes/{ap_title}/notice", summary="The notice the meter holds",
             responses=refusals)
    async def get_notice(
        ap_title: Annotated[str, PathParam(description="dotted AP title of a registered meter")],
    ) -> Any:
        """Read the meter's MT2 back: `notice` (null when cleared) and whether it is in force
        on the meter's clock (`active`)."""
        title = registered(ap_title)
        env, now = await context(title, clock=True)
        exchange = await headend.call(title, [headend._security(), FullReadRequest(NOTICE_TABLE)])
        if exchange.response is None:
            return JSONResponse({"detail": exchange.error or "no response"}, status_code=502)
        got = [s for s in exchange.response.epsem.services if isinstance(s, Response)][1:]
        if not got or not isinstance(got[0], ReadResponse):
            code = got[0].response_code if got else None
            raise HTTPException(502, f"the meter refused the read of MT2 (response code "
                                     f"{code})")
        try:
            shown = view(decode_table(NOTICE_TABLE, got[0].table_data.data, env))
        except DecodeError as exc:
            raise HTTPException(502, f"the meter's MT2 does not decode: {exc}") from None
        return {"ap_title": title, "meter_time": now,
                "notice": None if shown is None else _iso(shown.to_dict()),
                "active": shown is not None and now is not None and shown.active(now)}

    return api


class _NoAnswer(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("no answer")
        self.body = body


def _reason(exc: Exception) -> str:
    return str(exc)[:200]


def _iso(notice: dict[str, Any]) -> dict[str, Any]:
    """A notice with its times as ISO 8601 UTC (the API's time format)."""
    out = dict(notice)
    for key in ("start", "end"):
        if out[key] is not None:
            out[key] = dt.datetime.fromtimestamp(out[key], dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
    return out


__all__ = ["NoticeIn", "build", "router", "MAX_MINUTES", "MAX_LIMIT_KW"]
