"""Hypothesis strategies for C12.19 tables, derived from the layouts themselves.

``record_values(cls, env)`` walks a record's field specs in order (so counts and
conditions see the members drawn before them) and draws a value for every member that
the layout would encode under ``env``. ``envs()`` draws a Table 0 with every format
combination and small dimension tables, so sized tables stay small.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

from hypothesis import strategies as st

from c1222.tables import engine as e
from c1222.tables import types as t
from c1222.tables.decade0 import FormatControl1, FormatControl2, FormatControl3, GenConfig
from c1222.tables.decade1 import SourceRcd
from c1222.tables.decade2 import RegsRcd
from c1222.tables.decade4 import SecurityLimitingRcd
from c1222.tables.decade6 import LP_SETS, LpCtrl, LpSetRcd
from c1222.tables.decade7 import LogRcd
from c1222.tables.notice import CustomerNotice

VALID_INT_FMT = sorted(e.INT_FMT)
REST_MAX = 48  # keep raw tails short


def contexts() -> st.SearchStrategy[t.TableContext]:
    """Every defined combination of Table 0 formats."""
    return st.builds(
        t.TableContext,
        data_order=st.sampled_from([0, 1]),
        char_format=st.sampled_from([1, 2, 3, 4, 5]),
        tm_format=st.sampled_from([0, 1, 2, 3, 4]),
        int_format=st.sampled_from([0, 1, 2]),
        ni_format1=st.sampled_from(sorted(t.NI_SIZE)),
        ni_format2=st.sampled_from(sorted(t.NI_SIZE)),
        id_form=st.sampled_from([0, 1]),
    )


def _text(ctx: t.TableContext, size: int) -> st.SearchStrategy[str]:
    if ctx.char_format == t.CharFormat.ISO_646:
        chars = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    elif ctx.char_format == t.CharFormat.ISO_8859_1:
        chars = st.characters(min_codepoint=0x20, max_codepoint=0xFF)
    else:
        chars = st.characters(blacklist_categories=("Cs",), min_codepoint=0x20)
    codec, _unit = t._codec(ctx)
    return (st.text(chars, max_size=size)
            .map(lambda s: s.rstrip(" \x00"))
            .filter(lambda s: len(s.encode(codec)) <= size))


def _ni(ctx: t.TableContext, fmt: int) -> st.SearchStrategy:
    size = t.NI_SIZE[fmt]
    if fmt == t.NiFormat.FLOAT64:
        return st.floats(allow_nan=False, allow_infinity=False)
    if fmt == t.NiFormat.FLOAT32:
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if fmt in (7, 8, 9, 10, 11):
        lo, hi = t.int_range(size, ctx.int_format)
        return st.integers(lo, hi)
    if fmt == t.NiFormat.INT32_IMPLIED:
        lo, hi = t.int_range(4, ctx.int_format)
        return st.integers(lo, hi).map(lambda i: Decimal(i).scaleb(-4))
    if fmt in (5, 6, 12):
        return st.integers(0, 10 ** (2 * size) - 1)
    # character formats
    return (st.builds(lambda i, p: Decimal(i).scaleb(-p), st.integers(-(10 ** 20), 10 ** 20),
                      st.integers(0, 6))
            .filter(lambda d: len(str(d)) <= size))


def _time_date(ctx: t.TableContext, long: bool) -> st.SearchStrategy:
    tm = ctx.tm_format
    if tm == t.TmFormat.NO_CLOCK:
        return st.none()
    if tm in (t.TmFormat.BCD, t.TmFormat.UINT8):
        top = 99 if tm == t.TmFormat.BCD else 255
        f = st.integers(0, top)
        return st.builds(t.TimeDate, st.integers(1990, 2089), f, f, f, f,
                         f if long else st.just(0))
    if tm == t.TmFormat.UINT32_MINUTES:
        return st.builds(
            lambda d, s: t.TimeDate(d.year, d.month, d.day, d.hour, d.minute, s),
            st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(9999, 12, 31)),
            st.integers(0, 255) if long else st.just(0))
    return st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2106, 2, 7)).map(
        t.TimeDate.from_datetime)


def _value(draw, ftype: e.FieldType, scope: e.Scope, int_max: int | None):
    ctx = scope.ctx
    if isinstance(ftype, e.Struct):
        return _struct(draw, ftype, scope, int_max)
    if isinstance(ftype, e.Bits):
        kw = {}
        for name, lo, hi, is_flag in ftype.bits:
            width = hi - lo + 1
            kw[name] = draw(st.booleans()) if is_flag else draw(st.integers(0, (1 << width) - 1))
        return ftype.cls(**kw)
    if isinstance(ftype, e.UInt):
        top = (1 << (8 * ftype.nbytes)) - 1
        return draw(st.integers(0, top if int_max is None else min(top, int_max)))
    if isinstance(ftype, e.Int):
        return draw(st.integers(*t.int_range(ftype.nbytes, ctx.int_format)))
    if isinstance(ftype, e.Ni):
        return draw(_ni(ctx, ftype._fmt(scope)))
    if isinstance(ftype, e.LpInt):
        n, signed, ni = ftype._kind(scope, "")
        if ni:
            return draw(_ni(ctx, ctx.ni_format1 if ni == 1 else ctx.ni_format2))
        if signed:
            return draw(st.integers(*t.int_range(n, ctx.int_format)))
        return draw(st.integers(0, (1 << (8 * n)) - 1))
    if isinstance(ftype, e.IdString):
        if ctx.id_form:
            k = ftype.nchars // 2 * 2
            return draw(st.text("0123456789", min_size=k, max_size=k))
        return draw(_text(ctx, ftype.nchars))
    if isinstance(ftype, e.String):
        return draw(_text(ctx, ftype.size(scope)))
    if isinstance(ftype, e.Binary):
        n = ftype.size(scope)
        return draw(st.binary(min_size=n, max_size=n))
    if isinstance(ftype, e.Rest):
        return draw(st.binary(max_size=min(REST_MAX, ftype.size(scope))))
    if isinstance(ftype, e.Bcd):
        return draw(st.integers(0, 10 ** (2 * ftype.nbytes) - 1))
    if isinstance(ftype, e.TimeDateType):
        return draw(_time_date(ctx, ftype.long))
    if isinstance(ftype, e.TimeType):
        if ctx.tm_format == 0:
            return None
        if ctx.tm_format in (1, 2):
            f = st.integers(0, 99 if ctx.tm_format == 1 else 255)
            return draw(st.builds(t.TimeOfDay, f, f, f))
        return draw(st.integers(0, 2**32 - 1))
    if isinstance(ftype, e.SetOf):
        n = ftype.size(scope)
        if n == 0:
            return frozenset()
        return draw(st.frozensets(st.integers(0, 8 * n - 1)))
    raise AssertionError(f"no strategy for {ftype!r}")


def _notice(draw, ctx: t.TableContext) -> CustomerNotice:
    """MT2 values obey rules across members (kind, block, limit, start < end, UTF-8 text)."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        when = draw(_time_date(ctx, True))
        return CustomerNotice(0, 0, 0, 0, when, when, "", "")
    start = end = None
    if ctx.tm_format != t.TmFormat.NO_CLOCK:
        moments = draw(st.lists(st.datetimes(dt.datetime(2001, 1, 1), dt.datetime(2089, 12, 31)),
                                min_size=2, max_size=2, unique=True))
        start, end = (t.TimeDate.from_datetime(m) for m in sorted(moments))
    text = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn")),
                   max_size=60)  # at most 4 bytes a character: within 240
    ko, en = draw(text), draw(text)
    if kind == 3 and not (ko or en):
        en = "x"
    return CustomerNotice(draw(st.integers(1, 2**32 - 1)), kind,
                          draw(st.integers(1, 4)) if kind == 1 else 0,
                          draw(st.integers(1, 2**32 - 1)) if kind == 2 else 0,
                          start, end, ko, en)


def _struct(draw, struct: e.Struct, scope: e.Scope, int_max: int | None):
    if struct.cls is CustomerNotice:
        return _notice(draw, scope.ctx)
    this: dict = {}
    sub = e.Scope(scope.env, this, scope, struct.args)
    for name, spec in struct.specs:
        if spec.when is not None and not spec.when(sub):
            this[name] = None
        elif spec.count is not None:
            this[name] = tuple(_value(draw, spec.ftype, sub, int_max)
                               for _ in range(spec.count(sub)))
        else:
            this[name] = _value(draw, spec.ftype, sub, int_max)
    return struct.cls(**this)


@st.composite
def record_values(draw, cls: type, env: e.TableEnv, args=None, int_max: int | None = None):
    """A value of record ``cls`` that the layout can encode under ``env``."""
    return _struct(draw, e.Struct(cls, args), e.Scope(env, {}), int_max)


@st.composite
def envs(draw, ctx: t.TableContext | None = None, require: frozenset[int] = frozenset()):
    """A Table 0 (with the given or any formats) plus small dimension tables 11/21/41/61/62/71."""
    ctx = ctx if ctx is not None else draw(contexts())
    base = e.TableEnv(ctx)
    gc: GenConfig = draw(record_values(GenConfig, base))
    extra = draw(st.frozensets(st.sampled_from([63 + n for n in LP_SETS]))) | require
    gc = replace(
        gc,
        format_control_1=FormatControl1(ctx.data_order, ctx.char_format,
                                        gc.format_control_1.model_select),
        format_control_2=FormatControl2(ctx.tm_format, gc.format_control_2.data_access_method,
                                        ctx.id_form, ctx.int_format),
        format_control_3=FormatControl3(ctx.ni_format1, ctx.ni_format2),
        dim_std_tbls_used=max(gc.dim_std_tbls_used, 9),
        std_tbls_used=gc.std_tbls_used | extra,
    )
    tables: dict = {0: gc}
    env = e.TableEnv(ctx, tables)
    for number, cls in ((11, SourceRcd), (21, RegsRcd), (41, SecurityLimitingRcd), (61, LpSetRcd),
                        (71, LogRcd)):
        tables[number] = draw(record_values(cls, env, int_max=3))
    ctrl: LpCtrl = draw(record_values(LpCtrl, env, int_max=3))
    fixed = {}
    for n in LP_SETS:
        cur = ctrl.ctrl_set(n)
        if cur is not None:
            code = draw(st.sampled_from(VALID_INT_FMT))
            fixed[f"lp_ctrl_set{n}"] = replace(cur, int_fmt_cde=code)
    tables[62] = replace(ctrl, **fixed)
    return env
