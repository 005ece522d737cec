"""Notices and warnings on the display: the utility's notice and the display's own warnings.

Three banners can show on the page (docs/ihd.md, "Notices and warnings"):

* **the utility's notice**, written by the head-end to the meter's MT2 (CUSTOMER_NOTICE_TBL,
  :mod:`c1222.tables.notice`) and passed on by the meter's feed: a tariff block reached, a
  peak period with a requested limit, or free text, in Korean and English, shown from its
  start to its end on the meter's clock, or until the head-end clears it;
* **a block edge crossed**: this month's use is past the first block's upper edge (the
  display's own tariff engine, :mod:`c1222.ihd.tariff`, knows the blocks);
* **over the household's limit**: the present power is above the limit the household set on
  the page (kept in ``state_dir/ihd-settings.json``, so it survives a restart).

:class:`NoticeBoard` keeps the first and the limit; :func:`router` adds ``GET /api/notices``,
``PUT /api/power-limit`` and ``DELETE /api/power-limit`` to the display's app.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from c1222.tables.notice import NoticeView

log = logging.getLogger("c1222.ihd")

SETTINGS_FILE = "ihd-settings.json"
#: The limit a household may set, in W (a Korean household supply is at most a few tens of kW).
MIN_LIMIT_W = 1
MAX_LIMIT_W = 100_000
_NO_CACHE = {"Cache-Control": "no-cache"}


class NoticeBoard:
    """The meter's notice (as last received) and the household's power limit (persisted)."""

    def __init__(self, state_dir: Path | None) -> None:
        self.path = None if state_dir is None else Path(state_dir) / SETTINGS_FILE
        self._lock = threading.Lock()
        self.notice: NoticeView | None = None
        self.notice_received: int = 0
        self.power_limit_w: int | None = self._load()

    def _load(self) -> int | None:
        if self.path is None:
            return None
        try:
            value = json.loads(self.path.read_text("utf-8")).get("power_limit_w")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError) as exc:  # unreadable: start without one
            log.warning("%s: %s; no power limit set", self.path, exc)
            return None
        ok = isinstance(value, int) and not isinstance(value, bool) \
            and MIN_LIMIT_W <= value <= MAX_LIMIT_W
        return value if ok else None

    def set_notice(self, notice: NoticeView | None) -> None:
        """What the meter's MT2 holds now (None: cleared)."""
        with self._lock:
            self.notice = notice
            self.notice_received += 1

    def set_limit(self, watts: int | None) -> None:
        """Set (or with None clear) the household's limit and store it (atomically)."""
        with self._lock:
            if self.path is not None:
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(json.dumps({"power_limit_w": watts}), "utf-8")
                os.replace(tmp, self.path)
            self.power_limit_w = watts

    def state(self, history: Any, now: float, month: date | str) -> dict[str, Any]:
        """The ``/api/notices`` body: ``{time, tz, notice, power_limit_w, warnings}``.

        ``notice`` is the meter's notice while it is in force at ``now`` (the meter's clock),
        with its kind, block or limit, start, end and texts; ``warnings`` lists the display's
        own: ``{"kind": "power_limit", "limit_w", "power_w"}`` while the present power is
        over the limit (and samples are arriving), and ``{"kind": "block", "block",
        "edge_kwh", "month_kwh", "month"}`` once this month's use is past a block edge.
        """
        with self._lock:
            notice, limit = self.notice, self.power_limit_w
        warnings: list[dict[str, Any]] = []
        latest = history.latest()
        if limit is not None and latest is not None and not history.is_stale() \
                and latest.active_power > limit:
            warnings.append({"kind": "power_limit", "limit_w": limit,
                             "power_w": round(latest.active_power, 1)})
        crossed = block_crossed(Decimal(f"{history.month_to_date_kwh(now):.3f}"), month)
        if crossed is not None:
            warnings.append(crossed)
        shown = notice.to_dict() if notice is not None and notice.active(now) else None
        return {"time": now, "tz": history.tz_name, "notice": shown, "power_limit_w": limit,
                "warnings": warnings}


def block_crossed(month_kwh: Decimal, month: date | str) -> dict[str, Any] | None:
    """The block warning when ``month_kwh`` is past the first block (None before it, or for
    a month the tariff table does not cover): the block now and the edge crossed into it."""
    from c1222.ihd import tariff

    try:
        status = tariff.block_status(month_kwh, month)
        first = tariff.month_start(month)
        rates = tariff.KEPCO.rates_on(first)
    except ValueError:
        return None
    if status.block < 2:
        return None
    lower, upper = rates.bounds(status.season)
    edge = {2: lower, 3: upper}.get(status.block, rates.super_user_threshold)
    return {"kind": "block", "block": status.block, "edge_kwh": format(Decimal(edge), "f"),
            "month_kwh": format(month_kwh, "f"), "month": first.strftime("%Y-%m")}


class PowerLimitIn(BaseModel):
    """The household's limit of present power, in whole watts."""

    model_config = ConfigDict(extra="forbid")
    watts: StrictInt = Field(ge=MIN_LIMIT_W, le=MAX_LIMIT_W)


def router(board: NoticeBoard, history: Any, clock: Callable[[], float],
           month: Callable[[float], date | str]) -> APIRouter:
    """The routes of the notices (``clock``: the meter's "now"; ``month``: the billed month)."""
    api = APIRouter()

    def body() -> JSONResponse:
        now = clock()
        return JSONResponse(board.state(history, now, month(now)), headers=_NO_CACHE)

    @api.get("/api/notices")
    def notices() -> JSONResponse:
        return body()

    @api.put("/api/power-limit")
    def put_limit(limit: PowerLimitIn) -> JSONResponse:
        try:
            board.set_limit(limit.watts)
        except OSError as exc:
            return JSONResponse({"detail": f"the limit could not be stored: {exc.strerror}"},
                                status_code=507)
        return body()

    @api.delete("/api/power-limit")
    def delete_limit() -> JSONResponse:
        try:
            board.set_limit(None)
        except OSError as exc:
            return JSONResponse({"detail": f"the limit could not be stored: {exc.strerror}"},
                                status_code=507)
        return body()

    return api


__all__ = ["NoticeBoard", "PowerLimitIn", "block_crossed", "router", "SETTINGS_FILE",
           "MIN_LIMIT_W", "MAX_LIMIT_W"]
