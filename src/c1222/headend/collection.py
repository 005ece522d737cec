"""``GET /api/collection``: the collector's accounting, interval by interval (docs/headend.md,
"Collecting"). Included by :func:`c1222.headend.web.create_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from c1222.headend.schedule import HISTORY

if TYPE_CHECKING:
    from c1222.headend.server import HeadEnd


class IntervalJson(BaseModel):
    number: int = Field(description="1 for the first interval since the head-end started")
    start: float = Field(description="when the interval began (Unix seconds)")
    end: float = Field(description="when it ends (Unix seconds)")
    due: int = Field(description="meters set out to read (including those that registered "
                                 "before their slot)")
    read: int = Field(description="meters read, after retries (a late read included)")
    failed: int = Field(description="meters whose every attempt failed")
    late: int = Field(description="meters read after the interval ended")
    skipped: int = Field(description="meters not read: a read of an earlier interval still "
                                     "owed")
    retries: int = Field(description="attempts after a meter's first")
    gone: int = Field(description="meters that left (deregistered, forgotten) before their "
                                  "read")
    pending: int = Field(description="reads still owed: due - read - failed - skipped - gone")
    reasons: dict[str, int] = Field(description="failed meters by the reason of the last "
                                                "attempt: timeout, unreachable, refused:<code>, "
                                                "decode_error, ...")


class CollectionJson(BaseModel):
    interval: float = Field(description="seconds between two reads of a meter")
    concurrency: int = Field(description="reads at once at most (--collect-concurrency)")
    attempts: int = Field(description="attempts per meter per interval (--collect-attempts)")
    spread: float = Field(description="fraction of the interval the first attempts are "
                                      "spread over")
    log_interval: float = Field(description="seconds between reads of the load profile and "
                                            "history log (0: never)")
    running: int = Field(description="reads under way")
    queued: int = Field(description="attempts waiting for their time (slot or retry)")
    owed: int = Field(description="meters with a read queued, waiting or running")
    current: IntervalJson | None = Field(description="the interval under way (None before "
                                                     "the first)")
    history: list[IntervalJson] = Field(description="the intervals before it, newest first")
    totals: dict[str, int] = Field(description="the counts over all intervals")
    reasons: dict[str, int] = Field(description="failed meters by reason, all intervals")


def router(headend: HeadEnd) -> APIRouter:
    api = APIRouter(tags=["collection"])

    @api.get("/api/collection", response_model=CollectionJson)
    def collection(history: Annotated[int, Query(
            ge=0, le=HISTORY, description="past intervals to include, newest first")] = HISTORY
                   ) -> CollectionJson:
        """The collector's accounting: the current interval and the previous ones (each:
        meters due, read, failed with reasons, late, skipped, retries)."""
        view = headend.collection()
        view["history"] = view["history"][:history]
        return CollectionJson(**view)

    return api
