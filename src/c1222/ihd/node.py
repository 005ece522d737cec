"""The display's C12.22 side: the node on the home network the meter writes to every second.

It accepts Full Writes of the meter's context tables (0, 11, 12, 16, 21, 22, 27) and live
tables (28 present values, 23 registers, 52 clock), keeps the latest copy of each per meter, and
turns every live write into a :class:`~c1222.ihd.history.Sample` for the history and the page.
A live write that arrives before the context (the display restarted) is answered ONP, which
makes the meter send the context again (see :mod:`c1222.meter.han`). Tables it holds can be
read back (Full Read), which lets a test or a technician see what the display received.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from c1222.codec.ber import Uid
from c1222.codec.services import (
    FullReadRequest,
    FullWriteRequest,
    IdentifyRequest,
    IdentifyResponse,
    OkResponse,
    ReadResponse,
    Request,
    Response,
    TableData,
)
from c1222.errors import ERR, IAR, ONP, SNS, ChecksumMismatch, DecodeError
from c1222.session.responder import ServiceContext
from c1222.tables.access import Principal
from c1222.tables.readings import CONTEXT_TABLES, meter_time, meter_values

log = logging.getLogger("c1222.ihd")

#: The display's default AP title: a home-network node under the meter's own arcs.
IHD_AP_TITLE = "2.16.124.113620.1.22.0.123.8437.1"
LIVE_TABLES = (28, 23, 52)
ACCEPTED = frozenset(CONTEXT_TABLES) | frozenset(LIVE_TABLES)
#: Meters one display follows at most (their tables are kept in memory).
MAX_METERS = 16


class DisplayServices:
    """The service handler of the display node; ``on_sample`` gets each new measurement."""

    def __init__(self, on_sample: Callable[[Any], None]) -> None:
        self.on_sample = on_sample
        self.meters: dict[str, dict[int, bytes]] = {}
        self.received = 0

    def handle(self, request: Request, ctx: ServiceContext) -> Response:
        meter = str(ctx.apdu.calling_ap_title.absolute()) if ctx.apdu.calling_ap_title else ""
        if isinstance(request, IdentifyRequest):
            return IdentifyResponse(std=3, ver=1, rev=0)
        if isinstance(request, FullReadRequest):
            data = self.meters.get(meter, {}).get(request.table_id)
            if data is None:
                raise ONP(f"no table {request.table_id} received from {meter or 'this meter'}")
            return ReadResponse(table_data=TableData(data))
        if isinstance(request, FullWriteRequest):
            return self._write(meter, request)
        raise SNS(f"{request.service} is not served by the display")

    def _write(self, meter: str, request: FullWriteRequest) -> Response:
        if request.table_id not in ACCEPTED:
            raise IAR(f"table {request.table_id} is not one the display keeps")
        try:
            data = request.table_data.verified().data
        except ChecksumMismatch:
            raise ERR("table data checksum mismatch") from None
        tables = self.meters.get(meter)
        if tables is None:
            if len(self.meters) >= MAX_METERS:
                raise ONP("the display follows too many meters")
            tables = self.meters[meter] = {}
        if request.table_id in CONTEXT_TABLES:
            tables[request.table_id] = data
            return OkResponse()
        if any(n not in tables for n in CONTEXT_TABLES):
            raise ONP("context tables (0, 11, 12, 16, 21, 22, 27) first")
        candidate = {**tables, request.table_id: data}
        try:  # refuse what does not decode, keeping the last good copy
            if request.table_id == 52:
                meter_time(candidate)
            else:
                meter_values(candidate)
        except DecodeError as exc:
            raise IAR(f"table {request.table_id} does not decode: {exc}") from None
        tables[request.table_id] = data
        if request.table_id == 28:  # the last live table of the meter's write (or alone)
            self._sample(tables)
        return OkResponse()

    def _sample(self, tables: dict[int, bytes]) -> None:
        from c1222.ihd.history import Sample

        values = meter_values(tables)
        when = meter_time(tables) if 52 in tables else None
        if when is None:
            return
        self.received += 1
        self.on_sample(Sample(time=when, voltage=values.get("voltage", 0.0),
                              current=values.get("current", 0.0),
                              active_power=values.get("active_power", 0.0),
                              apparent_power=values.get("apparent_power", 0.0),
                              power_factor=values.get("power_factor", 0.0),
                              energy_wh=values.get("wh_delivered", 0.0)))

    def authenticate(self, user_id: int, password: bytes) -> Principal:
        return Principal(user_id, 0)  # nothing on the display is protected by a password

    def notice(self, event: str, ctx: ServiceContext | None, detail: str = "") -> None:
        log.info("%s %s", event, detail)


def ihd_title(text: str | None) -> Uid:
    return Uid.parse(text or IHD_AP_TITLE)
