"""The display's C12.22 side: the node on the home network the meter writes to every second.

It accepts Full Writes of the meter's context tables (0, 11, 12, 16, 21, 22, 27) and live
tables (28 present values, 23 registers, 52 clock) from **its own meter only** (the calling AP
title it is configured with; in a secured mode the responder has also checked the MAC with the
display's key), keeps the latest copy of each, and turns every live write into a
:class:`~c1222.ihd.history.Sample` for the history and the page. Writes from any other title
are refused UAT: one display, one household meter, one history.

A live write that arrives before the context (the display restarted) is answered ONP, which
makes the meter send the context again (see :mod:`c1222.meter.han`). Context tables are only
trusted once live values decode with them: a live write that does not decode puts back the
last context that did (and is answered IAR, so the meter resends its context), so one bad
Table 27 never breaks the next update. Tables it holds can be read back (Full Read), which lets
a test or a technician see what the display received.

The customer notice (MT2, :mod:`c1222.tables.notice`) the meter passes on from the head-end is
decoded with the meter's Table 0 and handed to ``on_notice`` (None when the meter's table is
cleared); one that does not decode (bad UTF-8, an end before its start ...) is answered IAR and
changes nothing.
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
from c1222.errors import ERR, IAR, ONP, SNS, UAT, ChecksumMismatch, DecodeError
from c1222.session.responder import ServiceContext
from c1222.tables.access import Principal
from c1222.tables.notice import NOTICE_TABLE, NoticeView, view
from c1222.tables.readings import CONTEXT_TABLES, meter_time, meter_values
from c1222.tables.registry import decode_table, make_env

log = logging.getLogger("c1222.ihd")

#: The display's default AP title: a home-network node under the meter's own arcs. The meter
#: addresses its feed to it by default (``c1222.meter.han.DISPLAY_AP_TITLE``; a test checks).
IHD_AP_TITLE = "2.16.124.113620.1.22.0.123.8437.1"
#: The meter the display follows by default: the meter's default AP title
#: (``c1222.meter.config.METER_AP_TITLE``; a test checks they agree).
METER_AP_TITLE = "2.16.124.113620.1.22.0.123.8437"
LIVE_TABLES = (28, 23, 52)
ACCEPTED = frozenset(CONTEXT_TABLES) | frozenset(LIVE_TABLES) | {NOTICE_TABLE}


class DisplayServices:
    """The service handler of the display node; ``on_sample`` gets each new measurement.

    ``meter`` is the AP title of the display's own meter (default :data:`METER_AP_TITLE`):
    writes from any other calling title are refused UAT.
    """

    def __init__(self, on_sample: Callable[[Any], None], meter: Uid | str | None = None, *,
                 on_notice: Callable[[NoticeView | None], None] | None = None) -> None:
        self.on_sample = on_sample
        self.on_notice = on_notice
        self.meter = str(_title(meter, METER_AP_TITLE).absolute())
        self.tables: dict[int, bytes] = {}
        self._good_context: dict[int, bytes] | None = None  # the last context that decoded
        self._time: float | None = None  # the meter's clock as last written (Table 52)
        self.received = 0
        #: Table writes answered OK (for /metrics).
        self.accepted = 0
        #: Writes refused, by reason ("title", "table", "checksum", "no_context",
        #: "undecodable"), for a technician and /metrics.
        self.refused: dict[str, int] = {}

    def handle(self, request: Request, ctx: ServiceContext) -> Response:
        if isinstance(request, IdentifyRequest):
            return IdentifyResponse(std=3, ver=1, rev=0)
        if isinstance(request, FullReadRequest):
            data = self.tables.get(request.table_id)
            if data is None:
                raise ONP(f"no table {request.table_id} received from the meter")
            return ReadResponse(table_data=TableData(data))
        if isinstance(request, FullWriteRequest):
            calling = ctx.apdu.calling_ap_title
            if calling is None or str(calling.absolute()) != self.meter:
                self._refuse("title")
                raise UAT(f"the display takes writes from its meter {self.meter} only")
            response = self._write(request)
            self.accepted += 1
            return response
        raise SNS(f"{request.service} is not served by the display")

    def _refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1

    def _write(self, request: FullWriteRequest) -> Response:
        if request.table_id not in ACCEPTED:
            self._refuse("table")
            raise IAR(f"table {request.table_id} is not one the display keeps")
        try:
            data = request.table_data.verified().data
        except ChecksumMismatch:
            self._refuse("checksum")
            raise ERR("table data checksum mismatch") from None
        tables = self.tables
        if request.table_id in CONTEXT_TABLES:
            tables[request.table_id] = data  # trusted once live values decode with it
            return OkResponse()
        if any(n not in tables for n in CONTEXT_TABLES):
            self._refuse("no_context")
            raise ONP("context tables (0, 11, 12, 16, 21, 22, 27) first")
        if request.table_id == NOTICE_TABLE:
            return self._notice(data)
        candidate = {**tables, request.table_id: data}
        try:  # refuse what does not decode, keeping the last good copy
            if request.table_id == 52:
                when = meter_time(candidate)
            else:
                values = meter_values(candidate)
        # LookupError: a Table 27/22 selecting a source past Table 12's entries, which older
        # readers let escape as IndexError; either way this write must not break the handler
        except (DecodeError, LookupError) as exc:
            self._refuse("undecodable")
            if self._good_context is not None:  # a bad context table: back to the last good
                tables.update(self._good_context)
            raise IAR(f"table {request.table_id} does not decode: {exc}") from None
        tables[request.table_id] = data
        if request.table_id == 52:  # (decoding it used Table 0 only: the rest is not proven)
            self._time = when
            return OkResponse()
        self._good_context = {n: tables[n] for n in CONTEXT_TABLES}
        if request.table_id == 28:  # the last live table of the meter's write (or alone)
            self._sample(values)
        return OkResponse()

    def _notice(self, data: bytes) -> Response:
        try:
            notice = decode_table(NOTICE_TABLE, data,
                                  make_env(decode_table(0, self.tables[0])))
        except DecodeError as exc:
            self._refuse("notice")
            raise IAR(f"the notice does not decode: {exc}") from None
        self.tables[NOTICE_TABLE] = data
        if self.on_notice is not None:
            self.on_notice(view(notice))
        return OkResponse()

    def _sample(self, values: dict[str, float]) -> None:
        from c1222.ihd.history import Sample

        if self._time is None:  # no clock yet: a sample needs the meter's time
            return
        self.received += 1
        self.on_sample(Sample(time=self._time, voltage=values.get("voltage", 0.0),
                              current=values.get("current", 0.0),
                              active_power=values.get("active_power", 0.0),
                              apparent_power=values.get("apparent_power", 0.0),
                              power_factor=values.get("power_factor", 0.0),
                              energy_wh=values.get("wh_delivered", 0.0)))

    def authenticate(self, user_id: int, password: bytes) -> Principal:
        return Principal(user_id, 0)  # nothing on the display is protected by a password

    def notice(self, event: str, ctx: ServiceContext | None, detail: str = "") -> None:
        log.info("%s %s", event, detail)


def _title(value: Uid | str | None, default: str) -> Uid:
    return value if isinstance(value, Uid) else Uid.parse(value or default)


def ihd_title(text: str | None) -> Uid:
    return _title(text, IHD_AP_TITLE)
