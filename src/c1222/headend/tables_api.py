"""Tables as values in the head-end (docs/headend.md, "Tables as values"), and the operator's
views of a meter: its event log with names, and the alarms of meters that fail reads.

The decoding is the tables package's (:mod:`c1222.tables.values`); this module only fetches
what it needs: the meter's Table 0 and dimension tables (read once per node and cached by
the head-end until the node registers again or one of them is written) and, for a logged
response, the request it answered.

Routes (included by :func:`c1222.headend.web.create_app`):

* ``GET /api/nodes/{ap_title}/tables/{number}`` reads the table (``offset`` and ``count``:
  a partial read) and returns the exchange and the table as values;
* ``PUT /api/nodes/{ap_title}/tables/{number}`` takes edited fields (``{"values": {path:
  value}}``), reads the table, applies them, encodes it with the engine and writes the bytes
  that changed (a partial write when the meter offers offset access, else a full write);
  422 for an empty, unknown or malformed field, or no change, and then nothing is sent;
* ``GET /api/nodes/{ap_title}/events``: the stored event log, each entry named;
* ``GET /api/alarms``: the registered meters whose last reads failed or that are over a
  bound, with why.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path as PathParam, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from c1222.codec import text
from c1222.codec.ber import Uid
from c1222.errors import C1222Error, ConfigurationError, LimitExceeded, LocalProtocolError
from c1222.tables.registry import TABLES, decode_table, encode_table
from c1222.tables.types import DataAccessMethod
from c1222.tables.values import (
    apply_edits, changed_span, context_tables, decode_for_edit, describe_table, event_name,
)
from c1222.headend.params import registered_node

if TYPE_CHECKING:
    from c1222.headend.server import Exchange, HeadEnd
    from c1222.headend.storage import MessageRecord

#: Messages before a logged response searched for the request it answered.
REQUEST_SEARCH = 20
#: Most fields one write may change.
MAX_EDITS = 1000
#: Tables larger than this, and partial reads, are described off the event loop (Table 74's
#: 1211 bytes take about 20 ms, a part of Table 64 as long as all of it: BENCHMARKS.md).
OFF_LOOP_BYTES = 1024
#: Most events one request returns.
MAX_EVENTS = 5000
#: A table number in a path (2048 + n: manufacturer table MTn).
TableNumber = Annotated[int, PathParam(ge=0, le=0xFFFF, description="table number "
                                                                    "(2048 + n: MTn)")]
_READS = ("full_read", "partial_read_offset")
_WRITES = ("full_write", "partial_write_offset")


# ------------------------------------------------------------------------------ decoding


def _table_id(service: Mapping[str, Any]) -> int | None:
    table = service.get("table_id")
    return table if isinstance(table, int) and not isinstance(table, bool) else None


def _hex_bytes(value: Any) -> bytes | None:
    try:
        return bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        return None


def tables_of(request: Mapping[str, Any] | None, response: Mapping[str, Any] | None
              ) -> list[tuple[int, int | None, bytes, str]]:
    """The table data a message pair carries, from their canonical JSON: ``(table, offset
    (None: full), bytes, "read"/"write")`` for each read answered ok and each write sent."""
    out: list[tuple[int, int | None, bytes, str]] = []
    asked = list((request or {}).get("services") or [])
    answered = list((response or {}).get("services") or [])
    for i, service in enumerate(asked):
        if not isinstance(service, dict):
            continue
        name, table = str(service.get("service") or ""), _table_id(service)
        if table is None:
            continue
        offset = service.get("offset") if name.startswith("partial") else None
        if offset is not None and not isinstance(offset, int):
            continue
        if name in _WRITES:
            data = _hex_bytes((service.get("table_data") or {}).get("data"))
            if data is not None:
                out.append((table, offset, data, "write"))
        elif name in _READS and i < len(answered) and isinstance(answered[i], dict):
            reply = answered[i]
            data = _hex_bytes((reply.get("table_data") or {}).get("data")) if reply.get(
                "response_code") == "ok" else None
            if data is not None:
                out.append((table, offset, data, "read"))
    return out


async def _described(headend: HeadEnd, items: Sequence[tuple[int, int | None, bytes, str]],
                     context: Mapping[int, bytes], missing: str | None) -> list[dict[str, Any]]:
    out = []
    for table, offset, data, kind in items:
        # a big table, or a partial read (decoded inside the whole table): in the decoder
        # process, off the event loop
        if len(data) > OFF_LOOP_BYTES or (offset is not None and table in TABLES):
            try:
                body = await headend._decode(describe_table, table, data, dict(context), offset)
            except C1222Error as exc:
                body = describe_table(table, b"", {}, offset=offset)
                body.update(count=len(data), error=f"not decoded: {exc}")
        else:
            body = describe_table(table, data, context, offset=offset)
        body["direction"] = kind
        if body["error"] and missing and table in TABLES:
            body["error"] = f"{missing}; {body['error']}"
        out.append(body)
    return out


async def exchange_tables(headend: HeadEnd, ap_title: str, exchange: Exchange
                          ) -> list[dict[str, Any]]:
    """The tables an exchange read or wrote, as values (reading the meter's Table 0 and
    dimension tables when they are not cached yet)."""
    if exchange.response is None:
        return []
    items = tables_of(text.to_json(exchange.request), text.to_json(exchange.response))
    wanted = sorted({n for table, *_ in items for n in context_tables(table)})
    context, missing = {}, None
    if wanted:
        try:
            context = await asyncio.wait_for(headend.read_tables(ap_title, wanted),
                                             headend.config.timeout * 2)
        except (C1222Error, OSError, ValueError, asyncio.TimeoutError) as exc:
            missing = f"the meter's context tables could not be read ({type(exc).__name__})"
            context = headend.cached_tables(ap_title)
    return await _described(headend, items, context, missing)


async def message_tables(headend: HeadEnd, record: MessageRecord) -> list[dict[str, Any]]:
    """The tables a logged message carries, as values, decoded with the tables the head-end
    holds for the node (a log view never makes the meter read); for a response, the request
    it answered is found among the :data:`REQUEST_SEARCH` messages before it."""
    if not record.json or not record.ap_title or headend.storage is None:
        return []
    try:
        this = json.loads(record.json)
    except ValueError:
        return []
    if not isinstance(this, dict):
        return []
    services = this.get("services") or []
    is_response = any(isinstance(s, dict) and "response_code" in s for s in services)
    request, response = (None, this) if is_response else (this, None)
    if is_response:
        earlier = await headend.storage.messages(record.ap_title, limit=REQUEST_SEARCH,
                                                 before_id=record.id)
        wanted = this.get("called_ap_invocation_id")
        for m in earlier:
            if m.direction == record.direction or not m.json:
                continue
            try:
                other = json.loads(m.json)
            except ValueError:
                continue
            if not isinstance(other, dict):
                continue
            if wanted is None or other.get("calling_ap_invocation_id") == wanted:
                request = other
                break
        if request is None:
            return []
    items = tables_of(request, response)
    context = headend.cached_tables(record.ap_title)
    missing = None if 0 in context else "this meter's Table 0 has not been read yet"
    return await _described(headend, items, context, missing)


# ------------------------------------------------------------------------------ models


class TableEdits(BaseModel):
    """Fields of a decoded table to change, by their path (as ``GET`` names them)."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, Any] = Field(description="path -> new value, e.g. "
                                               "{\"clock_calendar\": \"2026-12-06T14:30:00\"}",
                                   min_length=1, max_length=MAX_EDITS)


def _errors(loc: str, msg: str) -> list[dict[str, Any]]:
    return [{"loc": ["body", "values", loc[:80]], "msg": msg[:300], "type": "value_error"}]


# ------------------------------------------------------------------------------ routes


def router(headend: HeadEnd) -> APIRouter:
    routes = APIRouter()

    def registered(ap_title: str) -> str:
        return registered_node(headend, ap_title).ap_title

    async def service(title: str, name: str, params: dict[str, Any]) -> Exchange:
        try:
            return await headend.run_service(title, name, params)
        except LimitExceeded as exc:
            raise HTTPException(413, f"not sent: {exc}") from None
        except ConfigurationError as exc:
            raise HTTPException(404 if title not in headend.registrar.nodes else 422,
                                str(exc)) from None
        except (C1222Error, OSError, asyncio.TimeoutError) as exc:
            raise HTTPException(502, f"{type(exc).__name__}: {exc or 'time-out'}") from None

    def answer(exchange: Exchange, name: str, title: str, started: float) -> dict[str, Any]:
        from c1222.headend.web import exchange_json

        body = exchange_json(exchange, name, title, time.monotonic() - started)
        if exchange.response is None:
            raise HTTPException(502, body["error"] or "no response")
        return body

    @routes.get("/api/nodes/{ap_title}/tables/{number}", tags=["tables"],
                summary="Read a table and show it as values",
                responses={404: {}, 413: {}, 422: {}, 502: {}})
    async def get_table(
        ap_title: Annotated[str, PathParam(description="dotted AP title")],
        number: TableNumber,
        offset: Annotated[int | None, Query(ge=0, le=0xFFFFFF)] = None,
        count: Annotated[int | None, Query(ge=1, le=0xFFFF)] = None,
    ) -> dict[str, Any]:
        """The exchange (as the services route returns it) and `table`: every element with
        its name, value, unit and bytes (null when the meter refused the read)."""
        title = registered(ap_title)
        if (offset is None) != (count is None):
            raise HTTPException(422, [{"loc": ["query", "count" if count is None else
                                               "offset"], "type": "missing",
                                       "msg": "a partial read needs both offset and count"}])
        params: dict[str, Any] = {"table": number}
        if offset is not None:
            params.update(offset=offset, count=count)
        started = time.monotonic()
        exchange = await service(title, "read", params)
        body = answer(exchange, "read", title, started)
        tables = await exchange_tables(headend, title, exchange)
        body["tables"] = tables
        return {"exchange": body, "table": tables[0] if tables else None}

    @routes.put("/api/nodes/{ap_title}/tables/{number}", tags=["tables"],
                summary="Write changed fields of a table",
                responses={404: {}, 409: {}, 413: {}, 422: {}, 502: {}})
    async def put_table(
        ap_title: Annotated[str, PathParam(description="dotted AP title")],
        number: TableNumber,
        edits: Annotated[TableEdits, Body()],
    ) -> Any:
        """Reads the table, applies the edited fields, encodes it with the table engine and
        writes the changed bytes; returns `written` {offset, count, full}, the write
        exchange and the table as it was written."""
        title = registered(ap_title)
        if number not in TABLES:
            raise HTTPException(422, _errors("*", f"table {number} has no layout: use the "
                                                  "Write service with hex"))
        started = time.monotonic()
        read = await service(title, "read", {"table": number})
        answer(read, "read", title, started)
        assert read.response is not None  # answer() is a 502 without one
        items = tables_of(text.to_json(read.request), text.to_json(read.response))
        if not items:
            codes = ", ".join(s.get("response_code", "?") for s in text.to_json(
                read.response)["services"][1:] if isinstance(s, dict))
            raise HTTPException(409, f"the meter did not return table {number} ({codes})")
        old = items[0][2]
        try:
            context = await headend.read_tables(title, context_tables(number))
            value, env = decode_for_edit(number, old, context)
        except C1222Error as exc:
            raise HTTPException(409, f"table {number} as read does not decode: "
                                     f"{type(exc).__name__}: {exc}") from None
        try:
            new = encode_table(number, apply_edits(value, edits.values), env)
        except ValueError as exc:
            raise HTTPException(422, _errors(str(exc).split(":")[0], str(exc))) from None
        except (LocalProtocolError, C1222Error, OverflowError) as exc:
            raise HTTPException(422, _errors("*", f"does not encode: {exc}")) from None
        span = changed_span(old, new)
        if span is None:
            raise HTTPException(422, _errors("*", "the values are the table's already: "
                                                  "nothing to write"))
        gen = decode_table(0, context[0]) if number else value
        offsets = gen.format_control_2.data_access_method in (
            DataAccessMethod.OFFSET, DataAccessMethod.OFFSET_AND_INDEX)
        full = not offsets or span == (0, len(new))
        params: dict[str, Any] = {"table": number, "data": new.hex()}
        if not full:
            params = {"table": number, "offset": span[0],
                      "data": new[span[0]:span[0] + span[1]].hex()}
        started = time.monotonic()
        exchange = await service(title, "write", params)
        body = answer(exchange, "write", title, started)
        body["tables"] = []
        (table,) = await _described(headend, [(number, None, new, "write")], context, None)
        return {"written": {"offset": 0 if full else span[0],
                            "count": len(new) if full else span[1], "full": full},
                "exchange": body, "table": table}

    @routes.get("/api/nodes/{ap_title}/events", tags=["readings"],
                summary="The meter's event log, named", responses={404: {}})
    async def events(
        ap_title: Annotated[str, PathParam(description="dotted AP title")],
        limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 200,
    ) -> list[dict[str, Any]]:
        """The collected history-log entries (Table 74), newest first: time, sequence
        number, code, the standard's name of the code, user id and argument (hex)."""
        try:
            title = str(Uid.parse(ap_title).absolute())
        except (C1222Error, ValueError):
            raise HTTPException(404, f"{ap_title!r} is not an AP title") from None
        if headend.storage is None:
            raise HTTPException(503, "the head-end is not started")
        rows = await headend.storage.readings(title, kind="event", limit=limit,
                                              newest_first=True)
        out = []
        for r in rows:
            try:
                extra = json.loads(r.extra) if r.extra else {}
            except ValueError:
                extra = {}
            code = int(r.value)
            out.append({"time": r.time, "seq": extra.get("seq"), "code": code,
                        "name": event_name(code, bool(extra.get("mfg", False))),
                        "user_id": extra.get("user_id"), "argument": extra.get("argument")})
        return out

    @routes.get("/api/alarms", tags=["nodes"], summary="Meters that fail reads")
    async def alarms() -> JSONResponse:
        """Every registered meter whose last collection failed or that is over a bound:
        its title, read status and why (newest failure first)."""
        out = []
        for title, node in list(headend.registrar.nodes.items()):
            status = headend.node_json(node)["read_status"]
            if status and (status.get("consecutive_failures") or status.get("over_limit")):
                out.append({"ap_title": title, "read_status": status,
                            "reason": status.get("over_limit") or status.get("last_error")})
        out.sort(key=lambda a: a["read_status"].get("last_failure") or "", reverse=True)
        return JSONResponse(out)

    return routes


__all__ = ["router", "tables_of", "exchange_tables", "message_tables", "MAX_EDITS"]
