"""Manufacturer table MT2 CUSTOMER_NOTICE_TBL: a notice from the utility to the household.

C12.19 has no standard table for a message to the customer: decade 3 (30-34) only selects
which *sources* the meter's own display scrolls through, decade 11 (110-118, load control and
pricing) has no layout anyone could confirm, and no table or procedure carries text for the
customer (docs/spec c1219 sections 2, 8 and 12). So the notice travels in a manufacturer
table, documented in docs/tables.md ("Manufacturer table MT2"):

```
TYPE CUSTOMER_NOTICE_RCD = PACKED RECORD
    NOTICE_ID     : UINT32;          0: no notice (the table cleared)
    NOTICE_KIND   : UINT8;           0 none, 1 tariff block reached, 2 peak period, 3 free text
    TARIFF_BLOCK  : UINT8;           kind 1: the block reached (1-3, 4 super-user); else 0
    LIMIT_W       : UINT32;          kind 2: the requested limit of present power, W; else 0
    START_TIME    : LTIME_DATE;      in force from (the meter's clock, UTC)
    END_TIME      : LTIME_DATE;      in force until (after START_TIME)
    TEXT_KO       : UTF8(240);       Korean text, UTF-8, NUL-padded
    TEXT_EN       : UTF8(240);       English text, UTF-8, NUL-padded
END;
TABLE 2050 CUSTOMER_NOTICE_TBL = CUSTOMER_NOTICE_RCD;     (MT2)
```

Integers follow DATA_ORDER and times TM_FORMAT (Table 0), as in every table; the texts are
UTF-8 whatever CHAR_FORMAT says (ISO 646 cannot hold Korean). 502 bytes with TM_FORMAT 2.
A value that breaks a rule above (bad UTF-8, a NUL or control character inside a text, an
unknown kind, an end not after the start, ...) does not decode, so the table store answers
a write of it IAR (docs/tables.md, "Service reads and writes").
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import IntEnum

from c1222.errors import DecodeError, LocalProtocolError
from c1222.tables.engine import (
    LTIME_DATE, UINT8, UINT32, FieldType, TableEnv, blank_record, fld, record,
)
from c1222.tables.types import TimeDate

#: MT2 in this package's numbering (2048 + n).
NOTICE_TABLE_NUMBER = 2
NOTICE_TABLE = 2048 + NOTICE_TABLE_NUMBER
NOTICE_TABLE_NAME = "CUSTOMER_NOTICE_TBL"
#: Bytes of each text field: 80 Hangul syllables (3 bytes each) or 240 ASCII characters.
TEXT_BYTES = 240
#: Highest block a kind-1 notice may name (4 = the super-user tier, docs/spec kepco-tariff).
MAX_BLOCK = 4


class NoticeKind(IntEnum):
    """NOTICE_KIND."""

    NONE = 0
    BLOCK_REACHED = 1
    PEAK_PERIOD = 2
    TEXT = 3


class Utf8(FieldType):
    """UTF8(n): text in UTF-8 in n bytes, padded with NUL bytes (the texts of MT2).

    A NUL before the padding, bytes that are not UTF-8 or a text that ends in the middle of
    a character are a :class:`~c1222.errors.DecodeError`; nothing is replaced."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def size(self, scope) -> int:  # noqa: ANN001 - the engine's signature
        return self.nbytes

    def decode_raw(self, raw, scope, path, offset):  # noqa: ANN001
        text = raw.rstrip(b"\0")
        if b"\0" in text:
            raise DecodeError("a NUL inside the text", offset=offset + text.index(b"\0"),
                              path=path)
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not UTF-8 ({exc.reason})", offset=offset + exc.start,
                              path=path) from None

    def encode(self, value, scope, out, path):  # noqa: ANN001
        if not isinstance(value, str):
            raise LocalProtocolError(f"{path}: expected text, got {type(value).__name__}")
        data = value.encode("utf-8")
        if len(data) > self.nbytes or b"\0" in data:
            raise LocalProtocolError(f"{path}: {len(data)} bytes of UTF-8 (at most "
                                     f"{self.nbytes}, no NUL)")
        out += data.ljust(self.nbytes, b"\0")

    def blank(self, scope):  # noqa: ANN001
        return ""


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a notice text (too long in UTF-8, a control character or a
    lone surrogate), or None. The head-end's API and the table layout share this rule."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "not encodable as UTF-8 (a lone surrogate)"
    if size > TEXT_BYTES:
        return f"{size} bytes in UTF-8, at most {TEXT_BYTES}"
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") and ch != "\u200d":
            return f"control or unassigned character U+{ord(ch):04X}"
    return None


def _instant(value: TimeDate | None):  # -> datetime | None
    return None if value is None else value.to_datetime()


@record
class CustomerNotice:
    """MT2 CUSTOMER_NOTICE_TBL (see the module docstring). The rules are checked here, so a
    value that breaks one can neither be built nor decoded."""

    notice_id: int = fld(UINT32)
    notice_kind: int = fld(UINT8)
    tariff_block: int = fld(UINT8)
    limit_w: int = fld(UINT32)
    start_time: TimeDate | None = fld(LTIME_DATE)
    end_time: TimeDate | None = fld(LTIME_DATE)
    text_ko: str = fld(Utf8(TEXT_BYTES))
    text_en: str = fld(Utf8(TEXT_BYTES))

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """The first rule this value breaks, or None."""
        kind = self.notice_kind
        if kind not in NoticeKind.__members__.values():
            return f"NOTICE_KIND {kind} is not 0-3"
        for name in ("text_ko", "text_en"):
            text = getattr(self, name)
            if not isinstance(text, str):
                return f"{name.upper()} is not text"
            problem = text_problem(text)
            if problem is not None:
                return f"{name.upper()}: {problem}"
        if kind == NoticeKind.NONE:
            if self.notice_id or self.tariff_block or self.limit_w or self.text_ko \
                    or self.text_en:
                return "NOTICE_KIND 0 (no notice) with contents"
            return None
        if self.notice_id == 0:
            return "NOTICE_ID 0 is the cleared table"
        if kind == NoticeKind.BLOCK_REACHED:
            if not 1 <= self.tariff_block <= MAX_BLOCK:
                return f"TARIFF_BLOCK {self.tariff_block} is not 1-{MAX_BLOCK}"
        elif self.tariff_block:
            return f"TARIFF_BLOCK {self.tariff_block} with NOTICE_KIND {kind}"
        if (kind == NoticeKind.PEAK_PERIOD) != (self.limit_w > 0):
            return f"LIMIT_W {self.limit_w} with NOTICE_KIND {kind}"
        if kind == NoticeKind.TEXT and not (self.text_ko or self.text_en):
            return "a free-text notice without text"
        if self.start_time is None and self.end_time is None:
            return None  # a meter without a clock (TM_FORMAT 0): no bounds
        start, end = _instant(self.start_time), _instant(self.end_time)
        if start is None or end is None:
            return "START_TIME and END_TIME must be dates"
        if end <= start:
            return "END_TIME is not after START_TIME"
        return None


def cleared(env: TableEnv) -> CustomerNotice:
    """The table with no notice (what a clear writes): every member cleared under ``env``."""
    return blank_record(CustomerNotice, env)


@dataclass(frozen=True)
class NoticeView:
    """A notice as the display and the head-end's API show it (Unix times, kind by name)."""

    id: int
    kind: str
    block: int | None
    limit_w: int | None
    start: float | None
    end: float | None
    text_ko: str
    text_en: str

    def active(self, now: float) -> bool:
        """In force at ``now`` (the meter's clock): started and not ended."""
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "block": self.block, "limit_w": self.limit_w,
                "start": self.start, "end": self.end, "text_ko": self.text_ko,
                "text_en": self.text_en}


KIND_NAMES = {NoticeKind.BLOCK_REACHED: "block", NoticeKind.PEAK_PERIOD: "peak",
              NoticeKind.TEXT: "text"}


def view(notice: CustomerNotice) -> NoticeView | None:
    """The notice in the table, or None when the table is cleared."""
    import calendar

    if notice.notice_kind == NoticeKind.NONE:
        return None

    def unix(value: TimeDate | None) -> float | None:
        moment = _instant(value)
        return None if moment is None else float(calendar.timegm(moment.timetuple()))

    kind = NoticeKind(notice.notice_kind)
    return NoticeView(notice.notice_id, KIND_NAMES[kind],
                      notice.tariff_block if kind == NoticeKind.BLOCK_REACHED else None,
                      notice.limit_w if kind == NoticeKind.PEAK_PERIOD else None,
                      unix(notice.start_time), unix(notice.end_time), notice.text_ko,
                      notice.text_en)


__all__ = [
    "NOTICE_TABLE", "NOTICE_TABLE_NUMBER", "NOTICE_TABLE_NAME", "TEXT_BYTES", "MAX_BLOCK",
    "NoticeKind", "Utf8", "CustomerNotice", "NoticeView", "cleared", "view", "text_problem",
    "KIND_NAMES",
]
