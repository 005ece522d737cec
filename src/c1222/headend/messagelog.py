"""The message log, filtered and exported (docs/headend.md, "Message log").

:func:`query` is the one filter behind ``GET /api/messages`` and the exports: by node,
service, response code, security mode and time. The node and the page (``before_id``) are
the storage's; the rest is matched on each message's canonical JSON while the log is read
newest first, in pages, at most :data:`MAX_SCAN` messages per request (a filter that
matches little cannot make the head-end read its whole log; ``complete`` says whether the
scan reached the end). ``GET /api/messages/export?format=pcap|json`` writes what it finds
as a pcap Wireshark opens (one TCP stream per peer, or UDP datagrams, with the times and
addresses of the log) or as JSON lines.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response as HttpResponse

from c1222.codec.ber import Uid
from c1222.errors import C1222Error
from c1222.transport.pcap import PcapWriter
from c1222.headend.params import utc_query

if TYPE_CHECKING:
    from c1222.headend.server import HeadEnd
    from c1222.headend.storage import MessageRecord

#: Most messages read from storage for one filtered request.
MAX_SCAN = 20_000
#: Most messages one export holds.
MAX_EXPORT = 10_000
_PAGE = 500
#: Where a peer that is not host:port sits in an exported pcap.
_UNKNOWN_PEER = ("192.0.2.1", 1153)


@dataclass(frozen=True)
class Filter:
    """What a message must be to pass (None: anything)."""

    ap_title: str | None = None
    service: str | None = None
    response_code: str | None = None
    security_mode: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @property
    def on_json(self) -> bool:
        return (self.service, self.response_code, self.security_mode) != (None, None, None)

    def passes(self, m: MessageRecord) -> bool:
        if self.since is not None and m.time < self.since:
            return False
        if self.until is not None and m.time >= self.until:
            return False
        if not self.on_json:
            return True
        try:
            parsed = json.loads(m.json) if m.json else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return False  # an undecoded message has no service, code or mode
        if self.security_mode is not None and parsed.get("security_mode") != self.security_mode:
            return False
        services = [s for s in parsed.get("services") or () if isinstance(s, dict)]
        if self.service is not None and not any(
                _service_matches(str(s.get("service")), self.service) for s in services):
            return False
        if self.response_code is not None and not any(
                s.get("response_code") == self.response_code for s in services):
            return False
        return True


def _service_matches(name: str, wanted: str) -> bool:
    """``read`` matches full_read, partial_read_offset and a read response; ``full_read``
    only itself."""
    return name == wanted or wanted in name.split("_")


async def query(storage: Any, flt: Filter, limit: int, before_id: int | None = None
                ) -> tuple[list[MessageRecord], bool]:
    """Up to ``limit`` messages passing ``flt``, newest first; and whether the scan was
    complete (False: it stopped at :data:`MAX_SCAN` messages read)."""
    out: list[MessageRecord] = []
    scanned = 0
    cursor = before_id
    while len(out) < limit:
        page = _PAGE if (flt.on_json or flt.since or flt.until) else limit - len(out)
        page = min(page, MAX_SCAN - scanned)
        if page <= 0:
            return out, False
        rows = await storage.messages(flt.ap_title, limit=page, before_id=cursor)
        scanned += len(rows)
        for m in rows:
            if flt.since is not None and m.time < flt.since:
                return out, True  # newest first: nothing older can pass
            if flt.passes(m):
                out.append(m)
                if len(out) == limit:
                    return out, True
        if len(rows) < page:
            return out, True
        cursor = rows[-1].id
    return out, True



def make_filter(ap_title: str | None, service: str | None, response_code: str | None,
                security_mode: int | None, since: dt.datetime | None,
                until: dt.datetime | None) -> Filter:
    """A :class:`Filter` from query parameters; 404 for a title that is not one, 422 for a
    time range that ends before it starts."""
    title = None
    if ap_title:
        try:
            title = str(Uid.parse(ap_title).absolute())
        except (C1222Error, ValueError):
            raise HTTPException(404, f"{ap_title[:80]!r} is not an AP title") from None
    since, until = utc_query(since, "since"), utc_query(until, "until")
    if since is not None and until is not None and until <= since:
        raise HTTPException(422, [{"loc": ["query", "until"], "type": "value_error",
                                   "msg": "until must be after since"}])
    return Filter(title, service, response_code, security_mode, since, until)


#: The query parameters of a filter (shared by the list and the exports).
ServiceQ = Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$",
                                       description="a service: read, write, full_read, "
                                                   "logon, identify ...")]
CodeQ = Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,12}$",
                                    description="a response code: ok, sns, isc, onp ...")]
ModeQ = Annotated[int | None, Query(ge=0, le=2, description="security mode 0, 1 or 2")]
SinceQ = Annotated[dt.datetime | None, Query(description="ISO 8601 (UTC if no zone)")]
UntilQ = Annotated[dt.datetime | None, Query(description="exclusive")]


# ------------------------------------------------------------------------------ export


def _endpoint(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        return (str(ip_address(host)), int(port)) if sep else None
    except ValueError:
        return None


def pcap_bytes(messages: Sequence[MessageRecord], headend_address: tuple[str, int]) -> bytes:
    """The messages (oldest first) as a pcap: TCP messages on one connection per peer (the
    peer the client: a meter connects to the head-end), UDP ones as datagrams; times from
    the log. A peer that is not an IP address and port sits at 192.0.2.1 (TEST-NET)."""
    out = io.BytesIO()
    writer = PcapWriter(out)
    connections: dict[tuple[str, tuple[str, int]], Any] = {}
    local = (str(ip_address(headend_address[0])), int(headend_address[1]))
    for m in messages:
        peer = _endpoint(m.peer) or _UNKNOWN_PEER
        here = local
        if ip_address(peer[0]).version != ip_address(here[0]).version:
            here = ("::1", here[1]) if ip_address(peer[0]).version == 6 else ("127.0.0.1",
                                                                              here[1])
        when = m.time.timestamp()
        if m.transport == "udp":
            src, dst = (peer, here) if m.direction == "in" else (here, peer)
            writer.udp(src, dst, m.raw, time=when)
            continue
        key = (m.peer, here)
        conn = connections.get(key)
        if conn is None:
            conn = connections[key] = writer.tcp_connection(peer, here, time=when)
        conn.send(m.raw, from_client=m.direction == "in", time=when)
    writer.close()
    return out.getvalue()


def _json_line(m: MessageRecord) -> dict[str, Any]:
    try:
        parsed = json.loads(m.json) if m.json else None
    except ValueError:
        parsed = None
    return {"id": m.id, "time": m.time.isoformat().replace("+00:00", "Z"),
            "direction": m.direction, "peer": m.peer, "transport": m.transport,
            "ap_title": m.ap_title, "summary": m.summary, "hex": m.raw.hex(), "json": parsed}


def router(headend: HeadEnd) -> APIRouter:
    routes = APIRouter()

    @routes.get("/api/messages/export", tags=["messages"],
                summary="Export the message log (pcap or JSON)",
                responses={200: {"content": {"application/vnd.tcpdump.pcap": {},
                                             "application/json": {}}},
                           404: {}, 422: {}})
    async def export(
        format: Annotated[str, Query(pattern="^(pcap|json)$")] = "pcap",
        ap_title: Annotated[str | None, Query(description="only this node's")] = None,
        service: ServiceQ = None, response_code: CodeQ = None, security_mode: ModeQ = None,
        since: SinceQ = None, until: UntilQ = None,
        limit: Annotated[int, Query(ge=1, le=MAX_EXPORT)] = 1000,
    ) -> HttpResponse:
        """The newest `limit` messages passing the filters, oldest first: a pcap
        (Wireshark: C12.22 on the head-end's port; use Decode As for another port) or a JSON
        array. `X-C1222-Scan-Complete: false` when the filter scan stopped at its bound."""
        if headend.storage is None:
            raise HTTPException(503, "the head-end is not started")
        flt = make_filter(ap_title, service, response_code, security_mode, since, until)
        rows, complete = await query(headend.storage, flt, limit)
        rows.reverse()
        headers = {"X-C1222-Scan-Complete": "true" if complete else "false",
                   "X-C1222-Messages": str(len(rows))}
        if format == "json":
            body = json.dumps([_json_line(m) for m in rows], ensure_ascii=False)
            headers["Content-Disposition"] = 'attachment; filename="c1222-messages.json"'
            return HttpResponse(body, media_type="application/json", headers=headers)
        address = headend.address or _UNKNOWN_PEER
        data = pcap_bytes(rows, (address[0], address[1]))
        headers["Content-Disposition"] = 'attachment; filename="c1222-messages.pcap"'
        return HttpResponse(data, media_type="application/vnd.tcpdump.pcap", headers=headers)

    return routes


__all__ = ["Filter", "query", "make_filter", "pcap_bytes", "router", "MAX_SCAN", "MAX_EXPORT"]
