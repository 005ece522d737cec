"""Path and query parameters every router of the head-end's API reads the same way: an AP
title in the path (404 when it is no title or not registered) and a time in the query (UTC if
it has no zone; 422 when no storage can hold it)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from fastapi import HTTPException

from c1222.codec.ber import Uid
from c1222.errors import C1222Error

if TYPE_CHECKING:
    from c1222.headend.server import HeadEnd
    from c1222.session.registrar import Node


def title_key(ap_title: str) -> str:
    """The absolute dotted form the registry and storage key nodes by; 404 if no AP title."""
    try:
        return str(Uid.parse(ap_title).absolute())
    except (C1222Error, ValueError):
        raise HTTPException(404, f"{ap_title!r} is not an AP title") from None


def registered_node(headend: HeadEnd, ap_title: str) -> Node:
    """The registered node of ``ap_title``; 404 if it is no title or not registered now."""
    node = headend.registrar.nodes.get(title_key(ap_title))
    if node is None:
        raise HTTPException(404, f"{ap_title} is not registered")
    return node


def utc_query(when: dt.datetime | None, name: str) -> dt.datetime | None:
    """A query's time in UTC (naive: UTC). Year 1 at +01:00 is before year 1 in UTC: no
    storage can hold it, so it is a 422 naming the parameter, not a 500."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    try:
        return when.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        raise HTTPException(422, [{"loc": ["query", name], "type": "value_error",
                                   "msg": "out of the range of UTC times"}]) from None
