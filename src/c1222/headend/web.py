"""The head-end's REST API (OpenAPI at ``/openapi.json``, docs at ``/docs``) and web console.

``create_app(headend)`` returns a FastAPI app over a started :class:`~c1222.headend.server.
HeadEnd`. It must be served on the head-end's own event loop (the handlers await the
head-end's coroutines and queues)::

    server = uvicorn.Server(transport.http.uvicorn_config(create_app(headend), host, port))
    await server.serve()        # server.should_exit = True stops it

Live updates go out as server-sent events on ``/api/events``; every open stream ends within
:data:`TICK` seconds when the browser goes away or the server starts shutting down
(``should_exit``, Ctrl-C), so a shutdown never waits on an open console.

Endpoints (docs/headend.md): ``GET /api/nodes``, ``GET /api/nodes/{ap_title}``,
``POST /api/nodes/{ap_title}/services/{name}``, ``GET /api/nodes/{ap_title}/readings``,
``POST /api/nodes/{ap_title}/collect``, ``GET /api/messages``, ``GET /api/messages/{id}``,
``GET /api/events``, and ``PUT``/``DELETE``/``GET /api/nodes/{ap_title}/notice`` (notices to
the household, :mod:`c1222.headend.notices`); ``/`` is the console and ``/static/...`` its
files; ``GET /metrics`` the Prometheus metrics (:mod:`c1222.headend.metrics`), reachable like
the rest (no sign-in).

Hostile input: request bodies are read under :class:`~c1222.transport.http.HttpLimits`
(413 over the cap, 408 when too slow); every malformed parameter is a 422 whose body never
echoes the input (it may not even be JSON-encodable: bytes, NaN, infinity); a request too
large for the meter (or for :data:`~c1222.limits.MAX_APDU_SIZE`) is a 413 before anything is
sent. Secrets (Security passwords, Logon user names) are redacted in every message shown
(:mod:`c1222.codec.redact`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response as HttpResponse, \
    StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator

from c1222.codec import acse, text
from c1222.codec.redact import redact, redact_bytes
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.services import ErrorResponse, Response
from c1222.codes import ResponseCode
from c1222.errors import C1222Error, ConfigurationError, DecodeError, LimitExceeded
from c1222.headend.network import native_address_text
from c1222.headend.server import Exchange, HeadEnd, summary
from c1222.transport.http import HttpLimits, limit_body, metrics_exposition
from c1222.transport.sse import Streams, close_streams, hook_uvicorn_shutdown, sse

if TYPE_CHECKING:
    from c1222.headend.registry import Node
    from c1222.headend.storage import MessageRecord, NodeRecord, Reading

__all__ = ["STATIC", "close_streams", "create_app", "exchange_json", "tree_rows"]

STATIC = Path(__file__).resolve().parent / "static"
#: Seconds between checks of an event stream for a gone browser or a shutdown.
TICK = 0.25
#: Seconds between comment lines on an idle event stream, so proxies keep it open.
KEEPALIVE = 15.0
#: Most readings / messages one request returns.
MAX_READINGS = 20_000
MAX_MESSAGES = 1000
#: Largest row id a path or query takes (SQLite's and PostgreSQL's bigint).
MAX_ID = 2**63 - 1
_NO_CACHE = {"Cache-Control": "no-cache"}


# ------------------------------------------------------------------------------ models


class ServiceName(str, Enum):
    """The EPSEM services the console offers by name (``server.SERVICES``, checked by a
    test)."""

    identify = "identify"
    read = "read"
    write = "write"
    logon = "logon"
    security = "security"
    logoff = "logoff"
    wait = "wait"
    terminate = "terminate"
    disconnect = "disconnect"
    deregister = "deregister"
    resolve = "resolve"
    trace = "trace"
    procedure = "procedure"


class ErrorBody(BaseModel):
    detail: Any = Field(description="what was wrong")


class Latest(BaseModel):
    time: dt.datetime = Field(description="when the meter measured them (its clock, UTC)")
    values: dict[str, float] = Field(description="name -> value, e.g. voltage, active_power")


class NodeOut(BaseModel):
    """One node of the registry, with its latest present values when there are any."""

    ap_title: str = Field(description="absolute dotted AP title")
    native_address: str = Field(description="where the node listens (host:port, or hex)")
    node_type: int = Field(description="C12.22 node-type bits (0x20: end device)")
    connection_type: int | None = None
    device_class: str = Field(description="hex")
    serial_number: str
    registration_period: int = Field(description="seconds")
    registered_at: dt.datetime | None = None
    last_seen: dt.datetime | None = None
    state: str = Field(description="registered or deregistered")
    connected: bool = Field(False, description="the association it registered over is open")
    via: str | None = Field(None, description="AP title of the master relay the node is "
                                              "reached through (None: registered directly)")
    latest: Latest | None = Field(None, description="latest present values (Table 28)")
    registers: Latest | None = Field(None, description="latest energy registers (one node "
                                                       "only)")
    read_status: dict[str, Any] | None = Field(
        None, description="the collector's status: last_success, last_failure, last_error, "
                          "consecutive_failures, over_limit (docs/headend.md)")


class TraceOut(BaseModel):
    ap_title: str
    path: list[str] | None = Field(description="relay titles from the master relay outward; "
                                               "null when the master relay refused")
    error: str | None = Field(description="the master relay's error code, e.g. UAT (0x0c)")
    time: str = Field(description="when it was asked (UTC)")


class ResolveOut(BaseModel):
    ap_title: str
    native_address: str | None = Field(description="host:port, or hex when it does not "
                                                   "decode; null when refused")
    hex: str | None = Field(description="the native address as sent")
    error: str | None = Field(description="the master relay's error code, e.g. UAT (0x0c)")
    time: str = Field(description="when it was asked (UTC)")


class NetworkOut(BaseModel):
    """The relay network as the head-end knows it (docs/headend.md "Network")."""

    master_relay: dict[str, Any] | None = Field(
        description="address, ap_title, registered, registered_at, registration_period, "
                    "last_error, registrations, notifications (registered, deregistered, "
                    "refused); null without --master-relay")
    relays: list[dict[str, Any]] = Field(
        description="each relay: ap_title, master, native_address, nodes (ap_title, via, "
                    "native_address, path {path, error, time}, resolved {native_address, "
                    "error, time}, read_status)")
    direct: list[dict[str, Any]] = Field(description="nodes registered with the head-end "
                                                     "itself")


class ReadingOut(BaseModel):
    time: dt.datetime
    kind: str = Field(description="present, register, interval or event")
    name: str
    value: float
    extra: Any = Field(None, description="interval status / event argument, parsed JSON")


class TreeRow(BaseModel):
    """One element of a message and the bytes it occupies."""

    depth: int = Field(description="0 the APDU, 1 ACSE elements, 2 EPSEM, 3 services")
    label: str
    offset: int = Field(description="byte offset in `hex` (exact when the tree's `exact`)")
    length: int
    hex: str


class MessagePart(BaseModel):
    hex: str = Field(description="the APDU as it crossed the wire")
    summary: str | None = None
    json_: dict[str, Any] | None = Field(None, alias="json",
                                         description="canonical JSON form (docs/messages.md)")
    tree: list[TreeRow] | None = None
    exact: bool = Field(False, description="the tree's bytes are exactly `hex` (not decrypted "
                                           "or re-encoded)")
    decrypted: bool = Field(False, description="the tree shows the plaintext of a mode-2 "
                                               "message (same offsets and lengths as `hex`)")

    model_config = ConfigDict(populate_by_name=True)


class ExchangeOut(BaseModel):
    """A request, the meter's response (None when it did not answer) and the error if any."""

    service: str
    ap_title: str
    request: MessagePart | None = Field(description="None only when nothing could be sent")
    response: MessagePart | None
    error: str | None
    response_codes: list[str] = Field(description="one per service of the response, e.g. "
                                                  "['ok', 'sns']")
    elapsed_ms: float


class NoAnswer(ExchangeOut):
    """The meter did not answer (or not intelligibly): what was sent, and why."""

    detail: str


class CollectOut(BaseModel):
    ap_title: str
    stored: int = Field(description="readings newly stored")
    latest: Latest | None


class MessageOut(BaseModel):
    id: int
    time: dt.datetime
    direction: str = Field(description="in or out, seen from the head-end")
    peer: str
    transport: str
    ap_title: str | None
    summary: str
    size: int = Field(description="bytes")
    hex: str


class MessageDetail(MessageOut):
    json_: dict[str, Any] | None = Field(None, alias="json")
    tree: list[TreeRow] | None
    exact: bool = False
    decrypted: bool = Field(False, description="the tree shows the plaintext of a mode-2 "
                                               "message")
    error: str | None = Field(None, description="why the message could not be parsed")

    model_config = ConfigDict(populate_by_name=True)


def _hex(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = "".join(value.split())
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned:
        raise ValueError("empty: give the bytes in hex")
    try:
        bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError("not hex (pairs of 0-9a-f)") from None
    return cleaned


def _latin1(value: str | None) -> str | None:
    if value is not None:
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("only Latin-1 characters (one byte each)") from None
    return value


#: The parameters each service takes: (required, optional). Anything else is a 422, so a
#: parameter meant for another service is never silently dropped, and a write never falls
#: back to a default table.
SERVICE_PARAMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "identify": (frozenset(), frozenset()),
    "read": (frozenset({"table"}), frozenset({"offset", "count"})),
    "write": (frozenset({"table", "data"}), frozenset({"offset"})),
    "logon": (frozenset(), frozenset({"user_id", "user", "timeout"})),
    "security": (frozenset(), frozenset({"user_id", "password"})),
    "logoff": (frozenset(), frozenset()),
    "wait": (frozenset(), frozenset({"seconds"})),
    "terminate": (frozenset(), frozenset()),
    "disconnect": (frozenset(), frozenset()),
    "deregister": (frozenset(), frozenset({"ap_title"})),
    "resolve": (frozenset(), frozenset({"ap_title"})),
    "trace": (frozenset(), frozenset({"ap_title"})),
    "procedure": (frozenset({"number"}), frozenset({"params", "mfg", "seq"})),
}


def _params_error(name: str, given: set[str]) -> list[dict[str, Any]]:
    """422 details for parameters ``name`` does not take or lacks (FastAPI's error shape)."""
    required, optional = SERVICE_PARAMS[name]
    errors = [{"loc": ["body", k], "msg": f"{name} takes no {k!r}", "type": "extra_forbidden"}
              for k in sorted(given - required - optional)]
    errors += [{"loc": ["body", k], "msg": f"{name} needs {k!r}", "type": "missing"}
               for k in sorted(required - given)]
    if name == "read" and "offset" in given and "count" not in given:
        errors.append({"loc": ["body", "count"], "msg": "a partial read needs a count",
                       "type": "missing"})
    return errors


class ServiceParams(BaseModel):
    """Parameters of one service; each service takes only its own (docs/headend.md).

    Strict: a number is a JSON integer (not a string, float or boolean), text is a JSON
    string and never empty."""

    model_config = ConfigDict(extra="forbid", strict=True, str_min_length=1)

    table: int | None = Field(None, ge=0, le=0xFFFF, description="read, write: table number")
    offset: int | None = Field(None, ge=0, le=0xFFFFFF,
                               description="read, write: byte offset (a partial read/write)")
    count: int | None = Field(None, ge=0, le=0xFFFF,
                              description="read: octet count (a partial read); none: full read")
    data: str | None = Field(None, description="write: the table data, hex")
    user_id: int | None = Field(None, ge=0, le=0xFFFF, description="logon, security")
    user: str | None = Field(None, max_length=10, description="logon: user name (10 chars)")
    timeout: int | None = Field(None, ge=0, le=0xFFFF,
                                description="logon: session idle time-out, seconds")
    password: str | None = Field(None, max_length=20, description="security: password")
    seconds: int | None = Field(None, ge=0, le=255, description="wait: seconds")
    ap_title: str | None = Field(None, description="deregister, resolve, trace: the AP title "
                                                   "(default: the node's)")
    number: int | None = Field(None, ge=0, le=2047, description="procedure: number")
    params: str | None = Field(None, description="procedure: parameters, hex")
    mfg: bool | None = Field(None, description="procedure: manufacturer procedure")
    seq: int | None = Field(None, ge=0, le=255, description="procedure: sequence number")

    _check_data = field_validator("data", "params")(_hex)
    _check_text = field_validator("user", "password")(_latin1)

    @field_validator("ap_title")
    @classmethod
    def _check_title(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            Uid.parse(value)
        except (C1222Error, ValueError):
            raise ValueError("not an AP title (dotted, e.g. 2.16.124.113620.1.22.0.123.8437)"
                             ) from None
        return value


# ------------------------------------------------------------------------------ helpers


def tree_rows(apdu: Apdu, raw: bytes | None = None) -> tuple[list[dict[str, Any]], bool]:
    """The rows of :func:`c1222.codec.text.tree` as JSON, with byte offsets; and whether the
    rows' bytes are exactly ``raw`` (they are not for a decrypted mode-2 message)."""
    rows = []
    offset = 0
    joined = bytearray()
    for depth, label, data in text.tree(apdu):
        rows.append({"depth": depth, "label": label, "offset": offset, "length": len(data),
                     "hex": data.hex()})
        offset += len(data)
        joined += data
    return rows, raw is not None and bytes(joined) == raw


def response_codes(apdu: Apdu | None) -> list[str]:
    out = []
    for service in apdu.epsem.services if apdu is not None else ():
        if isinstance(service, Response):
            code = service.response_code
            name = (ResponseCode(code).name.lower() if code in ResponseCode._value2member_map_
                    else f"{code:#04x}")
            out.append(name if code or isinstance(service, ErrorResponse) else "ok")
    return out


def _decrypted(apdu: Apdu) -> bool:
    return apdu.epsem.security_mode == 2 and apdu.epsem.ciphertext is None


def _part(apdu: Apdu | None, raw: bytes) -> dict[str, Any]:
    """One message as the API shows it, its secrets redacted (bytes, JSON and tree)."""
    if apdu is None:
        return {"hex": raw.hex(), "summary": None, "json": None, "tree": None, "exact": False,
                "decrypted": False}
    raw = redact_bytes(raw, apdu)
    shown = redact(apdu)
    rows, exact = tree_rows(shown, raw)
    return {"hex": raw.hex(), "summary": summary(apdu), "json": text.to_json(shown),
            "tree": rows, "exact": exact, "decrypted": _decrypted(apdu)}


def exchange_json(exchange: Exchange, service: str, ap_title: str,
                  elapsed: float = 0.0) -> dict[str, Any]:
    """An :class:`~c1222.headend.server.Exchange` as the API returns it."""
    return {
        "service": service, "ap_title": ap_title,
        "request": _part(exchange.request, exchange.request_bytes),
        "response": None if exchange.response_bytes is None else _part(
            exchange.response, exchange.response_bytes),
        "error": exchange.error,
        "response_codes": response_codes(exchange.response),
        "elapsed_ms": round(elapsed * 1000, 1),
    }


def _utc(unix: float | None) -> dt.datetime | None:
    if not unix:
        return None
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc)


def _latest(readings: Sequence[Reading]) -> dict[str, Any] | None:
    if not readings:
        return None
    return {"time": readings[0].time, "values": {r.name: r.value for r in readings}}


def _reading(r: Reading) -> dict[str, Any]:
    extra = None
    if r.extra is not None:
        try:
            extra = json.loads(r.extra)
        except ValueError:
            extra = r.extra
    return {"time": r.time, "kind": r.kind, "name": r.name, "value": r.value, "extra": extra}


def _message(m: MessageRecord) -> dict[str, Any]:
    return {"id": m.id, "time": m.time, "direction": m.direction, "peer": m.peer,
            "transport": m.transport, "ap_title": m.ap_title, "summary": m.summary,
            "size": len(m.raw), "hex": m.raw.hex()}


def _message_detail(m: MessageRecord, headend: HeadEnd) -> dict[str, Any]:
    """The logged message with its tree: from the canonical JSON logged with it (which knows
    the request a response answered), else decoded again from the bytes (unprotected with
    the head-end's keys when it can; else the tree shows the ciphertext)."""
    body = _message(m)
    body.update(json=None, tree=None, exact=False, decrypted=False, error=None)
    apdu: Apdu | None = None
    if m.json:
        try:
            apdu = text.from_json(json.loads(m.json))
        except (ValueError, C1222Error) as exc:
            body["error"] = f"logged JSON: {exc}"
    if apdu is None:
        try:
            apdu = acse.decode(m.raw)
        except C1222Error as exc:
            body["error"] = f"{type(exc).__name__}: {exc}"
            return body
        if apdu.epsem.security_mode:
            from c1222.crypto.policy import unprotect

            try:
                apdu = unprotect(m.raw, headend.config.keys)
            except C1222Error as exc:
                body["error"] = f"not unprotected ({type(exc).__name__}); shown as received"
    # The log stores messages redacted; rows written before it did are redacted here.
    raw = redact_bytes(m.raw, apdu)
    apdu = redact(apdu)
    body["hex"] = raw.hex()
    body["json"] = text.to_json(apdu)
    try:
        body["tree"], body["exact"] = tree_rows(apdu, raw)
    except (C1222Error, ValueError) as exc:  # pragma: no cover - a logged message re-encodes
        body["error"] = f"tree: {exc}"
    body["decrypted"] = _decrypted(apdu)
    return body


def _safe_text(value: object, limit: int = 200) -> str:
    """Text that any JSON encoder takes (no lone surrogates), cut to ``limit``."""
    return str(value)[:limit].encode("utf-8", "replace").decode("utf-8")


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's error list without the offending input: it may be bytes that are not UTF-8,
    NaN or infinity, which no JSON response can carry (they were 500s)."""
    out = []
    for error in exc.errors()[:20]:
        loc = [x if isinstance(x, int) else _safe_text(x, 80) for x in error.get("loc", ())]
        out.append({"loc": loc, "msg": _safe_text(error.get("msg", "")),
                    "type": _safe_text(error.get("type", ""), 40)})
    return out


def _event_title(event: dict[str, Any]) -> str | None:
    node = event.get("node")
    if isinstance(node, dict):
        return node.get("ap_title")
    return event.get("ap_title")


# ------------------------------------------------------------------------------ the app


def create_app(headend: HeadEnd, http_limits: HttpLimits | None = None) -> FastAPI:
    """The REST API and console over a started head-end (served on its event loop).

    ``http_limits`` bounds request bodies (:class:`~c1222.transport.http.HttpLimits`; serve
    with :func:`~c1222.transport.http.uvicorn_config` for the header time-out too)."""
    streams = Streams()
    hook_uvicorn_shutdown()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        streams.closing = True

    app = FastAPI(
        title="c1222 head-end", version="1", lifespan=lifespan,
        description="The metering server's REST API: registered nodes and their readings, "
                    "every EPSEM service by name, the message log (each message as a tree and "
                    "in hex) and live events. The console is at `/`.")
    app.state.headend = headend
    app.state.c1222_streams = streams  # closed by uvicorn's shutdown (transport.sse)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    limit_body(app, http_limits)

    from c1222.headend.notices import router as notice_routes

    app.include_router(notice_routes(headend))  # notices to the household (MT2)
    from c1222.headend.collection import router as collection_routes

    app.include_router(collection_routes(headend))  # the collector's accounting

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_errors(exc)}, status_code=422)

    def storage() -> Any:
        if headend.storage is None:
            raise HTTPException(503, "the head-end is not started")
        return headend.storage

    def key(ap_title: str) -> str:
        try:
            return str(Uid.parse(ap_title).absolute())
        except (C1222Error, ValueError):
            raise HTTPException(404, f"{ap_title!r} is not an AP title") from None

    def registered(ap_title: str) -> Node:
        node = headend.registrar.nodes.get(key(ap_title))
        if node is None:
            raise HTTPException(404, f"{ap_title} is not registered")
        return node

    def connected(node: Node) -> bool:
        return node.peer is not None and headend.endpoint.find_link(node.peer) is not None

    def from_node(node: Node) -> dict[str, Any]:
        via = node.extra.get("via")
        return {"ap_title": node.ap_title, "via": via if isinstance(via, str) else None,
                "native_address": native_address_text(node.native_address),
                "node_type": node.node_type, "connection_type": node.connection_type,
                "device_class": node.device_class.hex(), "serial_number": node.serial_number,
                "registration_period": node.registration_period,
                "registered_at": _utc(node.registered_at), "last_seen": _utc(node.last_seen),
                "state": node.state,
                "connected": (headend.master is not None and headend.master.registered
                              if via else connected(node)),
                "read_status": headend.node_json(node)["read_status"]}

    def from_record(record: NodeRecord) -> dict[str, Any]:
        return {"ap_title": record.ap_title, "native_address": record.native_address,
                "node_type": record.node_type, "connection_type": record.connection_type,
                "device_class": record.device_class, "serial_number": record.serial_number,
                "registration_period": record.registration_period,
                "registered_at": record.registered_at, "last_seen": record.last_seen,
                "state": record.state, "connected": False, "via": record.via}

    async def known(ap_title: str) -> dict[str, Any]:
        title = key(ap_title)
        node = headend.registrar.nodes.get(title)
        if node is not None:
            return from_node(node)
        record = await storage().get_node(title)
        if record is None:
            raise HTTPException(404, f"{ap_title} is not known")
        return from_record(record)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_NO_CACHE)

    @app.api_route("/metrics", methods=["GET", "HEAD"], include_in_schema=False)
    async def metrics(request: Request) -> HttpResponse:
        """Prometheus text format (OpenMetrics when the scraper asks for it); query
        parameters are ignored. Built on the event loop, so the head-end's state is read
        between its steps (about 1.5 ms; docs/headend.md, "Metrics")."""
        body, content_type = metrics_exposition(headend.metrics.registry,
                                                request.headers.get("accept"))
        return HttpResponse(body, media_type=content_type, headers=_NO_CACHE)

    # -------------------------------------------------------------------- nodes

    @app.get("/api/nodes", response_model=list[NodeOut], tags=["nodes"],
             summary="Nodes with their state and latest present values")
    async def list_nodes(
        state: str = Query("all", pattern="^(all|registered|deregistered)$",
                           description="all, registered or deregistered"),
        latest: bool = Query(True, description="include each node's latest present values"),
    ) -> list[dict[str, Any]]:
        """Every node the head-end knows: those registered now (live state from the
        registry) and, unless filtered, those that deregistered (from storage)."""
        out: dict[str, dict[str, Any]] = {}
        for record in await storage().list_nodes():
            out[record.ap_title] = from_record(record)
        for title, node in list(headend.registrar.nodes.items()):
            out[title] = from_node(node)
        nodes = [n for n in out.values() if state == "all" or n["state"] == state]
        nodes.sort(key=lambda n: Uid.parse(n["ap_title"]).arcs)
        if latest:
            for n in nodes:
                n["latest"] = _latest(await storage().latest(n["ap_title"], "present"))
        return nodes

    @app.get("/api/nodes/{ap_title}", response_model=NodeOut, tags=["nodes"],
             summary="One node", responses={404: {"model": ErrorBody}})
    async def get_node(ap_title: str = PathParam(description="dotted AP title")
                       ) -> dict[str, Any]:
        """Its registry data, latest present values and latest energy registers."""
        body = await known(ap_title)
        body["latest"] = _latest(await storage().latest(body["ap_title"], "present"))
        body["registers"] = _latest(await storage().latest(body["ap_title"], "register"))
        return body

    @app.post(
        "/api/nodes/{ap_title}/services/{name}", response_model=ExchangeOut, tags=["services"],
        summary="Send one EPSEM service",
        responses={404: {"model": ErrorBody, "description": "the node is not registered"},
                   413: {"model": ErrorBody, "description": "the request would be larger "
                                                            "than the meter takes"},
                   422: {"model": ErrorBody, "description": "bad parameters"},
                   502: {"model": NoAnswer,
                         "description": "the meter did not answer (or not intelligibly)"}})
    async def run_service(
        ap_title: Annotated[str, PathParam(description="dotted AP title of a registered node")],
        name: Annotated[ServiceName, PathParam(description="the service")],
        params: Annotated[ServiceParams | None,
                          Body(description="the service's parameters")] = None,
    ) -> Any:
        """Send the service (with a Security service first for reads, writes and
        procedures) and return the request and the response, each parsed as a tree and in
        hex. 200 also when the meter answered an error code (see `response_codes`); 502 when
        it did not answer."""
        node = registered(ap_title)
        given = params.model_dump(exclude_none=True) if params is not None else {}
        wrong = _params_error(name.value, set(given))
        if wrong:
            raise HTTPException(422, wrong)
        started = time.monotonic()
        try:
            exchange = await headend.run_service(node.ap_title, name.value, given)
        except LimitExceeded as exc:
            if isinstance(exc, DecodeError):  # pragma: no cover - call() keeps these
                raise HTTPException(502, str(exc)) from None
            raise HTTPException(413, f"not sent: {exc}") from None
        except ConfigurationError as exc:
            if node.ap_title not in headend.registrar.nodes:
                raise HTTPException(404, str(exc)) from None
            raise HTTPException(422, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except (C1222Error, OSError, asyncio.TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc or 'time-out'}"
            body = {"service": name.value, "ap_title": node.ap_title, "request": None,
                    "response": None, "error": error, "response_codes": [],
                    "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
            return no_answer(body)
        body = exchange_json(exchange, name.value, node.ap_title, time.monotonic() - started)
        if exchange.response is None:
            return no_answer(body)
        return body

    def no_answer(body: dict[str, Any]) -> JSONResponse:
        body["detail"] = body["error"] or "no response"
        return JSONResponse(NoAnswer.model_validate(body).model_dump(mode="json", by_alias=True),
                            status_code=502)

    @app.get("/api/nodes/{ap_title}/readings", response_model=list[ReadingOut],
             tags=["readings"], summary="Stored readings of a node",
             responses={404: {"model": ErrorBody}})
    async def readings(
        ap_title: str = PathParam(description="dotted AP title"),
        kind: str | None = Query(None, pattern="^(present|register|interval|event)$",
                                 description="present, register, interval or event; "
                                             "none: all"),
        since: dt.datetime | None = Query(None, description="ISO 8601 (UTC if no zone)"),
        until: dt.datetime | None = Query(None, description="exclusive"),
        limit: int = Query(1000, ge=1, le=MAX_READINGS),
        newest_first: bool = Query(False, description="the newest `limit` readings"),
    ) -> list[dict[str, Any]]:
        """Readings with `since <= time < until`, oldest first unless `newest_first`. Each
        value is one row: a present snapshot is one row per quantity at one time."""
        title = (await known(ap_title))["ap_title"]

        def aware(when: dt.datetime | None, name: str) -> dt.datetime | None:
            if when is None:
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            try:  # year 1 at +01:00 is before year 1 in UTC: no storage can hold it
                return when.astimezone(dt.timezone.utc)
            except (OverflowError, ValueError):
                raise HTTPException(422, [{"loc": ["query", name], "type": "value_error",
                                           "msg": "out of the range of UTC times"}]) from None

        rows = await storage().readings(title, kind=kind, since=aware(since, "since"),
                                        until=aware(until, "until"), limit=limit,
                                        newest_first=newest_first)
        return [_reading(r) for r in rows]

    @app.post("/api/nodes/{ap_title}/collect", response_model=CollectOut, tags=["readings"],
              summary="Read a meter now",
              responses={404: {"model": ErrorBody}, 502: {"model": ErrorBody}})
    async def collect(
        ap_title: str = PathParam(description="dotted AP title of a registered node"),
        logs: bool = Query(False, description="also read load profile and event log"),
    ) -> dict[str, Any]:
        """Present values and registers (and with `logs`, Tables 64 and 74), stored as the
        collector stores them."""
        node = registered(ap_title)
        try:
            stored = await asyncio.wait_for(headend.collect(node.ap_title, logs=logs),
                                            headend.config.timeout * 2)
        except ConfigurationError as exc:
            raise HTTPException(404, str(exc)) from None
        except (C1222Error, OSError, ValueError, asyncio.TimeoutError) as exc:
            raise HTTPException(502, f"{type(exc).__name__}: {exc or 'time-out'}") from None
        latest = _latest(await storage().latest(node.ap_title, "present"))
        return {"ap_title": node.ap_title, "stored": stored, "latest": latest}

    # -------------------------------------------------------------------- network

    @app.get("/api/network", tags=["network"], summary="The relay network",
             response_model=NetworkOut)
    async def network() -> dict[str, Any]:
        """The master relay (null without --master-relay), the relays with the nodes behind
        each (by the last relay of a node's traced path, else the master relay; each node's
        cached Trace and Resolve with their times) and the nodes registered directly."""
        return headend.network()

    async def network_call(ap_title: str, action: str) -> dict[str, Any]:
        if headend.master is None:
            raise HTTPException(409, "the head-end has no master relay (--master-relay)")
        title = key(ap_title)
        try:
            run = headend.trace if action == "trace" else headend.resolve
            return await asyncio.wait_for(run(title), headend.config.timeout * 2)
        except (C1222Error, OSError, ValueError, asyncio.TimeoutError) as exc:
            raise HTTPException(502, f"{type(exc).__name__}: {exc or 'time-out'}") from None

    network_errors: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody, "description": "not an AP title"},
        409: {"model": ErrorBody, "description": "no --master-relay"},
        502: {"model": ErrorBody, "description": "the master relay could not be asked"}}

    @app.post("/api/network/nodes/{ap_title}/trace", tags=["network"],
              response_model=TraceOut, summary="Trace a node through the master relay",
              responses=network_errors)
    async def network_trace(
        ap_title: Annotated[str, PathParam(description="dotted AP title")],
    ) -> dict[str, Any]:
        """Sends Trace of the title to the master relay: the relays on its path, from the
        master relay outward, cached on the node with the time (shown by /api/network). 200
        with `error` set when the master relay answered an error code (UAT: unknown)."""
        return await network_call(ap_title, "trace")

    @app.post("/api/network/nodes/{ap_title}/resolve", tags=["network"],
              response_model=ResolveOut, summary="Resolve a node through the master relay",
              responses=network_errors)
    async def network_resolve(
        ap_title: Annotated[str, PathParam(description="dotted AP title")],
    ) -> dict[str, Any]:
        """Sends Resolve of the title to the master relay: its native address, decoded
        (binary or text), cached on the node with the time. 200 with `error` set when the
        master relay answered an error code (UAT: unknown)."""
        return await network_call(ap_title, "resolve")

    # -------------------------------------------------------------------- messages

    @app.get("/api/messages", response_model=list[MessageOut], tags=["messages"],
             summary="The message log, newest first")
    async def messages(
        ap_title: str | None = Query(None, description="only this node's messages"),
        limit: int = Query(100, ge=1, le=MAX_MESSAGES),
        before_id: int | None = Query(None, ge=1, le=MAX_ID,
                                      description="page: the last id seen"),
    ) -> list[dict[str, Any]]:
        """Every C12.22 message the head-end sent or received, newest first."""
        title = key(ap_title) if ap_title else None
        rows = await storage().messages(title, limit=limit, before_id=before_id)
        return [_message(m) for m in rows]

    @app.get("/api/messages/{message_id}", response_model=MessageDetail, tags=["messages"],
             summary="One logged message, parsed", responses={404: {"model": ErrorBody}})
    async def message(message_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]
                      ) -> dict[str, Any]:
        """The message in hex, its canonical JSON and its tree (each element with the bytes
        it occupies)."""
        record = await storage().message(message_id)
        if record is None:
            raise HTTPException(404, f"no message {message_id}")
        return _message_detail(record, headend)

    # -------------------------------------------------------------------- live events

    @app.get("/api/events", tags=["events"], summary="Live events (server-sent events)",
             response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "`registered`, `deregistered`, `message` and "
                                             "`reading` events, JSON in `data`"}})
    async def events(
        request: Request,
        ap_title: str | None = Query(None, description="message and reading events of this "
                                                       "node only (registrations: all)"),
        types: str | None = Query(None, description="comma-separated event types; "
                                                    "none: all"),
    ) -> StreamingResponse:
        """A `text/event-stream`: `event: <type>` with the event as JSON in `data`
        (`registered` {node}, `deregistered` {ap_title}, `message` {id, direction, ap_title,
        summary}, `reading` {ap_title, time, values}); a comment every 15 s when idle. Ends
        when the client goes away or the server shuts down."""
        title = key(ap_title) if ap_title else None
        wanted = {t.strip() for t in types.split(",") if t.strip()} if types else None
        queue = headend.subscribe()

        def passes(event: dict[str, Any]) -> bool:
            kind = event.get("type")
            if wanted is not None and kind not in wanted:
                return False
            if title is not None and kind in ("message", "reading"):
                return _event_title(event) == title
            return True

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n" + sse("hello", {"time": time.time()})
                idle_since = time.monotonic()
                while not streams.closing:
                    try:
                        event = await asyncio.wait_for(queue.get(), TICK)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            return
                        if time.monotonic() - idle_since > KEEPALIVE:
                            idle_since = time.monotonic()
                            yield ": keep-alive\n\n"
                        continue
                    if passes(event):
                        idle_since = time.monotonic()
                        yield sse(str(event.get("type")), _jsonable(event))
            finally:
                headend.unsubscribe(queue)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    return app


def _jsonable(event: dict[str, Any]) -> dict[str, Any]:
    """Node times as ISO text, like the REST API's."""
    node = event.get("node")
    if isinstance(node, dict):
        node = dict(node)
        for name in ("registered_at", "last_seen"):
            if isinstance(node.get(name), (int, float)):
                when = _utc(node[name])
                node[name] = when.isoformat().replace("+00:00", "Z") if when else None
        return {**event, "node": node}
    return event
