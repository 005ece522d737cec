"""The conformance suite as data: one :class:`Case` per service or negative case.

A case names the service it exercises, the security modes it applies to, its preconditions
(``needs``), what it sends and what passes. Single-request cases are a ``build`` (the request
services) and a ``check`` (the answer to a verdict); the others are a ``steps`` coroutine that
talks through a :class:`Probe` (read, write back, read again ...). The runner
(:mod:`c1222.headend.conformance.runner`) supplies the probe and adds what every case shares:

* every response is held to the protocol rules (:mod:`~c1222.headend.conformance.rules`); a
  violation is a FAIL of the case, whatever the service answered;
* with credentials (``--password``) a case that reads or writes tables sends a sessionless
  Security service first, as a production client does (digest 12); a refused Security makes
  the case NOT TESTED (the credentials are the user's, not the target's fault);
* SNS on an optional service is "NOT SUPPORTED by the target" (NOT TESTED), not a failure,
  except for the services every node must offer (Identify, Full read, Partial read offset:
  digest 10.1), which must pass.

Writes put back the bytes the target had and read the table again, so a run never leaves a
device modified; if a write changed the table after all, the original is written back and the
case fails saying so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.services import (
    DefaultReadRequest,
    DeregisterRequest,
    DisconnectRequest,
    ErrorResponse,
    FullReadRequest,
    FullWriteRequest,
    IdentifyRequest,
    IdentifyResponse,
    LogoffRequest,
    LogonRequest,
    LogonResponse,
    PartialReadIndexRequest,
    PartialReadOffsetRequest,
    PartialWriteIndexRequest,
    PartialWriteOffsetRequest,
    ReadResponse,
    Request,
    ResolveRequest,
    ResolveResponse,
    Response,
    SecurityRequest,
    TableData,
    TerminateRequest,
    TraceRequest,
    TraceResponse,
    WaitRequest,
)
from c1222.codec.native import decode_native_address
from c1222.codes import ResponseCode
from c1222.errors import DecodeError
from c1222.headend.conformance.draft import Refusal
from c1222.headend.conformance.report import Verdict, code_text

OK = ResponseCode.OK
ALL_MODES = frozenset({0, 1, 2})
SECURED_MODES = frozenset({1, 2})
#: The user name of the tester's Logon (10 bytes, space padded; digest 4.1).
LOGON_USER = b"C1222CONF "
#: Idle time-out the tester asks for in Logon (MSDK's default, digest 12) and a Wait's seconds.
LOGON_IDLE = 60
WAIT_SECONDS = 5
#: Bytes of the write table a partial write offset puts back, and where.
PARTIAL_OFFSET = 2
PARTIAL_COUNT = 8
#: Seconds a target has to close the TCP connection after answering Disconnect.
DISCONNECT_GRACE = 2.0
#: Logoffs sent after a Disconnect through a relay while the relay answers for a lost link.
DISCONNECT_TRIES = 8
#: Answers of a relay that has lost (or not yet re-reached) the target's connection.
RELAY_LOST = frozenset({ResponseCode.NETR, ResponseCode.NETT, ResponseCode.BSY})


# --------------------------------------------------------------------------- what a case sees


@dataclass
class Seen:
    """One request and its answer, as a case sees it."""

    requests: tuple[Request, ...]
    responses: list[Response] = field(default_factory=list)
    error: str | None = None  # no answer, or an answer that could not be verified/decoded
    silent: bool = False  # no answer in time, or the connection closed (``closed``)
    closed: bool = False
    violations: list[str] = field(default_factory=list)
    prefix: int = 0  # Security services the probe put in front of the case's own services
    auth_requested: bool = False
    with_credentials: bool = False
    apdu: Apdu | None = None  # the verified response
    refusal: Refusal | None = None  # an answer came back that the tester could not read

    @property
    def answer(self) -> Response | None:
        """The response to the last request service (the one the case is about)."""
        if not self.responses:
            return None
        if len(self.responses) == len(self.requests):
            return self.responses[-1]
        return self.responses[-1] if len(self.responses) > self.prefix else None

    @property
    def code(self) -> int | None:
        answer = self.answer
        return None if answer is None else answer.response_code

    @property
    def security(self) -> Response | None:
        """The response to the Security service the probe sent first, if it did."""
        return self.responses[0] if self.prefix and self.responses else None

    def describe(self) -> str:
        """What the target answered, for the table: ``ISC (0x03)``, ``no response`` ..."""
        if self.closed and not self.responses:
            return "connection closed"
        if self.silent:
            return "no response"
        if self.refusal is not None and not self.responses:
            return self.refusal.short
        if self.error and not self.responses:
            return "undecodable"
        answer = self.answer
        if answer is None:
            return "-"
        text = code_text(answer.response_code)
        if isinstance(answer, ReadResponse):
            text += f", {len(answer.table_data.data)} bytes"
        if isinstance(answer, ErrorResponse) and answer.max_size is not None:
            text += f", max {answer.max_size}"
        return text


@dataclass(frozen=True)
class Outcome:
    """A case's conclusion and the exchange it is about."""

    verdict: Verdict
    reason: str = ""
    seen: Seen | None = None


def passed(seen: Seen | None, reason: str = "") -> Outcome:
    return Outcome(Verdict.PASS, reason, seen)


def failed(seen: Seen | None, reason: str) -> Outcome:
    return Outcome(Verdict.FAIL, reason, seen)


def untested(seen: Seen | None, reason: str) -> Outcome:
    return Outcome(Verdict.NOT_TESTED, reason, seen)


NOT_SUPPORTED = "NOT SUPPORTED by the target (SNS)"


class Probe(Protocol):
    """What a case may do (implemented by the runner)."""

    @property
    def state(self) -> RunState: ...

    @property
    def settings(self) -> CaseSettings: ...

    async def ask(self, services: Sequence[Request], *, auth: bool = False,
                  called: Uid | None | bool = True, key_id: int | None = None,
                  corrupt_mac: bool = False, quiet: bool = False, fresh_link: bool = False,
                  note: str | None = None) -> Seen:
        """Send ``services`` (after a Security service when ``auth`` and credentials are given)
        to the target and return what came back. ``called=False`` omits the called AP title,
        a Uid sends to that title instead of the target's; ``key_id`` secures with another key
        id; ``corrupt_mac`` flips a MAC bit; ``quiet`` waits briefly, where silence is an
        acceptable answer; ``fresh_link`` opens a new TCP connection first."""
        ...

    async def link_closes(self, seconds: float) -> bool:
        """True when the target closes the current TCP connection within ``seconds``."""
        ...

    def segments(self) -> tuple[int, int]:
        """Segments the tester has sent and received so far (transport.endpoint stats)."""
        ...

    @property
    def registrations(self) -> int:
        """Registers of the target the tester has seen (as its registrar or, through the
        master relay's notifications, as a notification host)."""
        ...

    @property
    def sees_registrations(self) -> str | None:
        """How the tester sees the target register (None: it does not)."""
        ...

    @property
    def register_timeout(self) -> float:
        """Seconds to wait for a Register (--register-timeout)."""
        ...

    async def registered_again(self, after: int, seconds: float) -> Uid | None | bool:
        """Wait for a Register of the target beyond ``after``: False when none came in time,
        the target's new AP title when it registered under another, else True."""
        ...


@dataclass(frozen=True)
class CaseSettings:
    """The parts of the user's settings the cases use."""

    user_id: int = 2
    password: bytes | None = None  # 20 bytes, space padded
    reader_id: int = 1
    reader_password: bytes | None = None
    write_table: int = 6
    unknown_table: int | None = None
    oversize: int = 40_000
    deregister: bool = False
    calling_ap_title: Uid = Uid.parse("2.16.124.113620.1.22.0.123.4")
    #: The tester's link segment size (--segment-size): the segmentation case's request is
    #: larger, so it goes as segments (codec.segments); None: the case is NOT TESTED.
    segment_size: int | None = None

    @property
    def credentials(self) -> bool:
        return self.password is not None

    def wrong_password(self) -> bytes:
        """A password that is neither the operator's nor the reader's."""
        taken = {self.password, self.reader_password}
        for candidate in (b"C1222-WRONG-PASSWORD", b"c1222-wrong-password"):
            if candidate not in taken:
                return candidate
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class RunState:
    """What the cases of one mode and transport learn and leave for the next ones."""

    mode: int
    transport: str
    called: Uid | None
    table0: bytes | None = None
    unknown_table: int | None = None
    original: bytes | None = None  # the write table, as read before any write
    original_why: str = ""  # why it could not be read
    index_element: bytes | None = None  # element 0 of the write table (partial read index)
    writable: bool = False  # a full write of the write table passed
    session: bool = False  # a Logon session is open on the association
    logon: bool = False  # Logon passed
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    #: The target is reached through a relay (--via-relay, --master-relay): requests go to the
    #: relay's address with the target's title as the called AP title.
    via: bool = False
    #: The relay to ask Resolve and Trace of the target (the one reached, or the master
    #: relay); None: ask the target itself.
    relay: Uid | None = None
    #: The target is itself a relay (it answers Trace of its own title, or --target-role
    #: relay): the services of rules.RELAY_NEED_NOT_SERVE may be refused.
    relay_target: bool = False


# --------------------------------------------------------------------------- the case type


Build = Callable[[CaseSettings, RunState], Sequence[Request]]
Check = Callable[[Seen, CaseSettings, RunState], Outcome]
Steps = Callable[[Probe], Awaitable[Outcome]]


@dataclass(frozen=True)
class Case:
    """One conformance case.

    ``needs``: preconditions, each a key of :data:`PRECONDITIONS`; a case whose precondition
    fails is NOT TESTED with the reason given there. ``auth``: send a Security service first
    when credentials are given. ``mandatory``: SNS is a FAIL, not NOT SUPPORTED.
    """

    id: str
    service: str
    sends: str
    passes: str
    modes: frozenset[int] = ALL_MODES
    needs: tuple[str, ...] = ()
    auth: bool = False
    mandatory: bool = False
    build: Build | None = None
    check: Check | None = None
    steps: Steps | None = None


def _need_credentials(s: CaseSettings, st: RunState) -> str | None:
    return None if s.credentials else "needs credentials: give --password (and --user-id)"


def _need_reader(s: CaseSettings, st: RunState) -> str | None:
    return None if s.reader_password is not None else "needs --reader-password"


def _need_session(s: CaseSettings, st: RunState) -> str | None:
    return None if st.session else "needs a Logon session (Logon did not pass)"


def _need_logon(s: CaseSettings, st: RunState) -> str | None:
    return None if st.logon else "needs Logon (it did not pass)"


def _need_no_session(s: CaseSettings, st: RunState) -> str | None:
    return None if not st.session else "a Logon session is still open"


def _need_table0(s: CaseSettings, st: RunState) -> str | None:
    return None if st.table0 else "needs Table 0 (the full read did not pass)"


def _need_writable(s: CaseSettings, st: RunState) -> str | None:
    return None if st.writable else (f"needs a writable table: the full write of table "
                                     f"{s.write_table} did not pass (see --write-table)")


def _need_index(s: CaseSettings, st: RunState) -> str | None:
    return None if st.index_element else "needs a partial read by index that passed"


def _need_called(s: CaseSettings, st: RunState) -> str | None:
    return None if st.called is not None else \
        "the target's AP title is unknown: give --called-ap-title"


def _need_deregister(s: CaseSettings, st: RunState) -> str | None:
    return None if s.deregister else "deregisters the target itself: only with --deregister"


def _need_segment_size(s: CaseSettings, st: RunState) -> str | None:
    return None if s.segment_size else ("needs --segment-size: the tester's link segment "
                                        "size, which the request goes over")


PRECONDITIONS: dict[str, Callable[[CaseSettings, RunState], str | None]] = {
    "credentials": _need_credentials, "reader": _need_reader, "session": _need_session,
    "logon": _need_logon, "no_session": _need_no_session, "table0": _need_table0,
    "writable": _need_writable, "index": _need_index, "called": _need_called,
    "deregister": _need_deregister, "segment_size": _need_segment_size,
}


def unmet(case: Case, settings: CaseSettings, state: RunState) -> str | None:
    """Why ``case`` cannot run now, or None."""
    for need in case.needs:
        why = PRECONDITIONS[need](settings, state)
        if why is not None:
            return why
    return None


# --------------------------------------------------------------------------- shared checks


def screen(seen: Seen, settings: CaseSettings, *, mandatory: bool = False,
           unsupported: bool = True, silence_ok: bool = False) -> Outcome | None:
    """The verdicts every case shares, or None to let the case judge the answer.

    Protocol violations and missing answers fail; refused credentials, ISC where the user
    gave none, and SNS on an optional service (``unsupported``) are NOT TESTED.
    """
    if seen.violations:
        return failed(seen, "protocol: " + "; ".join(seen.violations))
    if seen.error is not None and not (silence_ok and seen.silent):
        return failed(seen, seen.error)
    security = seen.security
    if security is not None and security.response_code != OK:
        return untested(seen, f"the target refused the credentials of user {settings.user_id}"
                              f" (Security: {code_text(security.response_code)})")
    code = seen.code
    if seen.auth_requested and not seen.with_credentials and code == ResponseCode.ISC:
        return untested(seen, "the target wants credentials for this (ISC): give --password")
    if unsupported and code == ResponseCode.SNS:
        if mandatory:
            return failed(seen, "SNS: every C12.22 node must offer this service (digest 10.1)")
        return untested(seen, NOT_SUPPORTED)
    return None


def expect_code(seen: Seen, wanted: ResponseCode | int) -> Outcome:
    if seen.code == wanted:
        return passed(seen)
    return failed(seen, f"expected {ResponseCode(wanted).name}, got {_got(seen)}")


def _got(seen: Seen) -> str:
    return ResponseCode(seen.code).name if seen.code in ResponseCode._value2member_map_ \
        else seen.describe()


def _simple(check: Check, **screening: bool) -> Check:
    """``check`` after :func:`screen`."""

    def run(seen: Seen, settings: CaseSettings, state: RunState) -> Outcome:
        early = screen(seen, settings, **screening)
        return early if early is not None else check(seen, settings, state)

    return run


def _read_data(seen: Seen) -> bytes | None:
    answer = seen.answer
    if isinstance(answer, ReadResponse) and answer.response_code == OK:
        return answer.table_data.data
    return None


# --------------------------------------------------------------------------- positive cases


def _check_identify(seen: Seen, s: CaseSettings, st: RunState) -> Outcome:
    answer = seen.answer
    if not isinstance(answer, IdentifyResponse) or answer.response_code != OK:
        return failed(seen, f"expected OK with the Identify data, got {_got(seen)}")
    if answer.std != 3:
        return failed(seen, f"<std> is {answer.std}, not 3 (C12.22; digest 4.2)")
    identity = ""
    if answer.device_identity is not None:
        identity = answer.device_identity.identity.decode("latin-1", "replace")
        identity = f", identity {identity!r}"
    return passed(seen, f"C12.22 version {answer.ver}.{answer.rev}{identity}")


def _check_table0(seen: Seen, s: CaseSettings, st: RunState) -> Outcome:
    data = _read_data(seen)
    if data is None:
        return failed(seen, f"expected OK with Table 0, got {_got(seen)}")
    if not data:
        return failed(seen, "Table 0 is empty")
    st.table0 = data
    st.unknown_table = s.unknown_table if s.unknown_table is not None else _absent_table(data)
    return passed(seen)


def _absent_table(table0: bytes) -> int:
    """A standard table the target does not have: the first gap in Table 0's STD_TBLS_USED,
    or 2000 when Table 0 does not decode."""
    from c1222.errors import C1222Error
    from c1222.tables.registry import decode_table

    try:
        used = decode_table(0, table0, strict=False).std_tbls_used
    except (C1222Error, AttributeError, ValueError):
        return 2000
    return next(n for n in range(1, 2040) if n not in used) if len(used) < 2039 else 2000


def _build_partial_offset(s: CaseSettings, st: RunState) -> Sequence[Request]:
    offset, count = _partial_span(len(st.table0 or b""))
    return [PartialReadOffsetRequest(0, offset, count)]


def _partial_span(size: int) -> tuple[int, int]:
    offset = PARTIAL_OFFSET if size > PARTIAL_OFFSET else 0
    return offset, max(1, min(PARTIAL_COUNT, size - offset))


def _check_partial_offset(seen: Seen, s: CaseSettings, st: RunState) -> Outcome:
    data = _read_data(seen)
    if data is None:
        return failed(seen, f"expected OK with table data, got {_got(seen)}")
    offset, count = _partial_span(len(st.table0 or b""))
    expected = (st.table0 or b"")[offset:offset + count]
    if data != expected:
        return failed(seen, f"bytes {offset}..{offset + count} of Table 0 are {data.hex()}, "
                            f"the full read gave {expected.hex()}")
    return passed(seen, f"Table 0 bytes {offset}..{offset + count} match the full read")


def _check_default_read(seen: Seen, s: CaseSettings, st: RunState) -> Outcome:
    data = _read_data(seen)
    if data is None:
        return failed(seen, f"expected OK with table data, got {_got(seen)}")
    return passed(seen)


def _check_ok(seen: Seen, s: CaseSettings, st: RunState) -> Outcome:
    return expect_code(seen, OK)


async def _original(p: Probe) -> tuple[bytes | None, Outcome | None]:
    """The write table as the target has it (read once per mode and transport)."""
    st, s = p.state, p.settings
    if st.original is not None:
        return st.original, None
    seen = await p.ask([FullReadRequest(s.write_table)], auth=True)
    early = screen(seen, s)
    if early is not None:
        if early.verdict is Verdict.NOT_TESTED:
            early = untested(seen, f"cannot read table {s.write_table}: {early.reason}")
        return None, early
    data = _read_data(seen)
    if data is None:
        return None, untested(seen, f"cannot read table {s.write_table} to write it back: "
                                    f"{seen.describe()} (choose one with --write-table)")
    st.original = data
    return data, None


async def _unchanged(p: Probe, what: str, seen: Seen) -> Outcome | None:
    """Read the write table again: None when it is as it was, else a FAIL (after writing the
    original back)."""
    s, st = p.settings, p.state
    again = await p.ask([FullReadRequest(s.write_table)], auth=True)
    data = _read_data(again)
    if data is None:
        return failed(again, f"cannot read table {s.write_table} back after {what}: "
                             f"{again.describe()}")
    if data == st.original:
        return None
    restore = await p.ask([FullWriteRequest(s.write_table, TableData(st.original or b""))],
                          auth=True, note="restoring the table")
    fixed = "written back" if restore.code == OK else "COULD NOT be written back"
    return failed(seen, f"table {s.write_table} changed after {what}; the original was {fixed}")


async def _full_write(p: Probe) -> Outcome:
    s, st = p.settings, p.state
    original, early = await _original(p)
    if original is None:
        return early or untested(None, "cannot read the write table")
    seen = await p.ask([FullWriteRequest(s.write_table, TableData(original))], auth=True)
    early = screen(seen, s)
    if early is not None:
        return early
    if seen.code == ResponseCode.IAR:
        return untested(seen, f"table {s.write_table} is read-only on the target (IAR); "
                              "choose a writable one with --write-table")
    if seen.code != OK:
        return failed(seen, f"expected OK, got {_got(seen)}")
    changed = await _unchanged(p, "writing back its own bytes", seen)
    if changed is not None:
        return changed
    st.writable = True
    return passed(seen, f"table {s.write_table} ({len(original)} bytes) written back unchanged")


async def _partial_write_offset(p: Probe) -> Outcome:
    s = p.settings
    original, early = await _original(p)
    if original is None:
        return early or untested(None, "cannot read the write table")
    offset, count = _partial_span(len(original))
    chunk = original[offset:offset + count]
    seen = await p.ask([PartialWriteOffsetRequest(s.write_table, offset, TableData(chunk))],
                       auth=True)
    early = screen(seen, s)
    if early is not None:
        return early
    if seen.code != OK:
        return failed(seen, f"expected OK, got {_got(seen)}")
    changed = await _unchanged(p, "a partial write of its own bytes", seen)
    return changed or passed(seen, f"bytes {offset}..{offset + count} written back unchanged")


async def _partial_read_index(p: Probe) -> Outcome:
    s, st = p.settings, p.state
    seen = await p.ask([PartialReadIndexRequest(s.write_table, (0,), 1)], auth=True)
    early = screen(seen, s)
    if early is not None:
        return early
    data = _read_data(seen)
    if data is None:
        return failed(seen, f"expected OK with table data, got {_got(seen)}")
    if not data:
        return failed(seen, f"element 0 of table {s.write_table} came back empty")
    original = st.original
    if original is None:
        original, _ = await _original(p)
    if original is not None and not original.startswith(data):
        return failed(seen, f"element 0 ({data.hex()}) is not where the full read of table "
                            f"{s.write_table} starts")
    st.index_element = data
    return passed(seen, f"element 0 of table {s.write_table}: {len(data)} bytes")


async def _partial_write_index(p: Probe) -> Outcome:
    s, st = p.settings, p.state
    element = st.index_element or b""
    seen = await p.ask([PartialWriteIndexRequest(s.write_table, (0,), TableData(element))],
                       auth=True)
    early = screen(seen, s)
    if early is not None:
        return early
    if seen.code != OK:
        return failed(seen, f"expected OK, got {_got(seen)}")
    changed = await _unchanged(p, "a partial write by index of its own bytes", seen)
    return changed or passed(seen, "element 0 written back unchanged")


async def _logon(p: Probe) -> Outcome:
    s, st = p.settings, p.state
    seen = await p.ask([LogonRequest(s.user_id, LOGON_USER, LOGON_IDLE)])
    early = screen(seen, s)
    if early is not None:
        return early
    if not isinstance(seen.answer, LogonResponse) or seen.code != OK:
        return failed(seen, f"expected OK with the session idle time-out, got {_got(seen)}")
    st.session = st.logon = True
    return passed(seen, f"session idle time-out {seen.answer.resp_session_idle_timeout} s")


async def _logon_twice(p: Probe) -> Outcome:
    seen = await p.ask([LogonRequest(p.settings.user_id, LOGON_USER, LOGON_IDLE)])
    early = screen(seen, p.settings)
    if early is not None:
        return early
    if seen.code == OK:
        return failed(seen, "a second Logon in an open session was accepted (expected ISSS)")
    return expect_code(seen, ResponseCode.ISSS)


async def _logoff(p: Probe) -> Outcome:
    seen = await p.ask([LogoffRequest()])
    early = screen(seen, p.settings)
    if early is None and seen.code == OK:
        p.state.session = False
        return passed(seen)
    # Leave no session behind for the cases that need none.
    end = await p.ask([TerminateRequest()], note="ending the session")
    if end.code == OK:
        p.state.session = False
    return early or expect_code(seen, OK)


async def _terminate(p: Probe) -> Outcome:
    st = p.state
    logon = await p.ask([LogonRequest(p.settings.user_id, LOGON_USER, LOGON_IDLE)])
    if logon.code != OK:
        return untested(logon, f"Logon before Terminate refused: {logon.describe()}")
    st.session = True
    seen = await p.ask([TerminateRequest()])
    early = screen(seen, p.settings)
    if early is not None:
        return early
    if seen.code != OK:
        return expect_code(seen, OK)
    st.session = False
    after = await p.ask([LogoffRequest()], note="the session must be gone")
    if after.code == OK:
        return failed(after, "the session survived Terminate (Logoff after it got OK)")
    return passed(seen, "the session ended (Logoff after it: "
                        f"{after.describe()})")


async def _disconnect(p: Probe) -> Outcome:
    if p.state.via:
        return await _disconnect_via_relay(p)
    seen = await p.ask([DisconnectRequest()], auth=False, fresh_link=True)
    early = screen(seen, p.settings)
    if early is not None:
        return early
    if seen.code != OK:
        return expect_code(seen, OK)
    if p.state.transport != "tcp":
        return passed(seen)
    if not await p.link_closes(DISCONNECT_GRACE):
        return failed(seen, "the connection stayed open after Disconnect")
    return passed(seen, "the target closed the connection")


async def _disconnect_via_relay(p: Probe) -> Outcome:
    """Through a relay the target's connection is the relay's, not the tester's (which carries
    other traffic and stays open): what the tester can see is the OK and that the target's
    association ended with it — a Logon session opened before is gone, so a Logoff after the
    Disconnect is refused (ISSS), or the relay has lost the connection (NETR, NETT)."""
    st = p.state
    logon = await p.ask([LogonRequest(p.settings.user_id, LOGON_USER, LOGON_IDLE)],
                        fresh_link=True, note="a session the Disconnect must end")
    if logon.code == OK:
        st.session = True
    seen = await p.ask([DisconnectRequest()])
    early = screen(seen, p.settings)
    if early is not None:
        return early
    if seen.code != OK:
        return expect_code(seen, OK)
    if logon.code != OK:
        return passed(seen, "through the relay; whether the association ended is not seen "
                            f"(Logon before it: {logon.describe()})")
    for _ in range(DISCONNECT_TRIES):
        after = await p.ask([LogoffRequest()], note="the target's association must be gone")
        if after.code is None:
            return failed(after, "no answer to a Logoff after the Disconnect, through the "
                                 f"relay ({after.describe()})")
        if after.code == OK:
            return failed(after, "the target's session survived Disconnect (a Logoff after "
                                 "it, through the relay, got OK)")
        if after.code not in RELAY_LOST:
            st.session = False
            return passed(seen, "through the relay: the target's association ended (a "
                                f"Logoff after it: {after.describe()})")
        await asyncio.sleep(DISCONNECT_GRACE / DISCONNECT_TRIES)  # the relay reconnecting
    st.session = False
    return passed(seen, "through the relay: the relay lost the target's connection (a Logoff "
                        f"after it: {after.describe()})")


async def _deregister(p: Probe) -> Outcome:
    """Deregister of the target's own title, sent to the target (through the relays when it is
    reached through them). A node told so forgets its registration and registers again (c1222.md
    7.3): as the target's registrar (--listen) or a notification host of the master relay
    (--master-relay: the master relay tells of the new registration) the tester sees that on
    the wire and waits for it (--register-timeout), so the device is left registered."""
    assert p.state.called is not None
    before = p.registrations
    seen = await p.ask([DeregisterRequest(p.state.called)], auth=True)
    early = screen(seen, p.settings)
    if early is not None:
        return early
    if seen.code != OK:
        return expect_code(seen, OK)
    how = p.sees_registrations
    if how is None:
        return passed(seen, "whether it registers again is not seen (neither --listen nor "
                            "--master-relay)")
    wait = p.register_timeout
    again = await p.registered_again(before, wait)
    if again is False:
        return failed(seen, f"Deregister answered OK, but the target did not register again "
                            f"within {wait:g} s (c1222.md 7.3; seen by {how})")
    if isinstance(again, Uid):
        p.state.called = again
        return passed(seen, f"it registered again as {again} (seen by {how})")
    return passed(seen, f"it registered again (seen by {how})")


def _unregistered_title(s: CaseSettings) -> Uid:
    """A title no node has: not the tester's own, which may be a head-end's registered with a
    master relay behind the target (a relay forwards Deregister to it)."""
    return Uid(s.calling_ap_title.absolute().arcs + (65_000,))


def _check_deregister_other(seen: Seen, s: CaseSettings, st: RunState) -> Outcome:
    if seen.code in (OK, ResponseCode.UAT):
        return passed(seen)
    return failed(seen, f"expected UAT (not registered) or OK, got {_got(seen)}")


def _judge_resolve(seen: Seen) -> tuple[str | None, str | None]:
    """(what the answer says, why it fails) of an OK Resolve answer."""
    answer = seen.answer
    if not isinstance(answer, ResolveResponse):
        return None, f"expected the native address, got {_got(seen)}"
    try:
        host, port = decode_native_address(answer.native_address)
    except DecodeError:
        return None, (f"the native address {answer.native_address.hex() or '(empty)'} does not "
                      "decode (binary IPv4/IPv6 + port, or ASCII host:port)")
    return f"native address {host}:{port}" if ":" not in host else \
        f"native address [{host}]:{port}", None


def _judge_trace(seen: Seen) -> tuple[str | None, str | None]:
    answer = seen.answer
    if not isinstance(answer, TraceResponse):
        return None, f"expected the relays' titles, got {_got(seen)}"
    if not answer.ap_titles:
        return None, "an empty path: the relay answering is on it (c1222-network.md)"
    return "path " + " > ".join(str(t.absolute()) for t in answer.ap_titles), None


async def _network_service(p: Probe, make: Callable[[Uid], Request],
                           judge: Callable[[Seen], tuple[str | None, str | None]]) -> Outcome:
    """Resolve or Trace of the target's title, asked of the relay when the target is reached
    through one (then it must answer OK: the relay routes to the target) or of the target
    itself (OK or UAT; SNS from an end device: not supported); then of a title no node has,
    which must be UAT wherever the first answer was not SNS."""
    st = p.state
    assert st.called is not None
    where: Uid | bool = st.relay if st.relay is not None else True
    seen = await p.ask([make(st.called)], called=where,
                       note=f"asked of relay {st.relay}" if st.relay is not None else None)
    early = screen(seen, p.settings)
    if early is not None:
        return early
    said = "the title is not known"
    if seen.code == OK:
        text, wrong = judge(seen)
        if wrong is not None:
            return failed(seen, wrong)
        said = text or ""
    elif st.via or seen.code != ResponseCode.UAT:
        return failed(seen, f"expected OK{'' if st.via else ' or UAT'} for {st.called}"
                            f"{' (the relay reaches it)' if st.via else ''}, got {_got(seen)}")
    other = _other_title(st)
    unknown = await p.ask([make(other)], called=where, note=f"a title no node has: {other}")
    early = screen(unknown, p.settings, unsupported=False)
    if early is not None:
        return early
    if unknown.code != ResponseCode.UAT:
        return failed(unknown, f"expected UAT for {other}, which no node has, got "
                               f"{_got(unknown)}")
    return passed(seen, f"{said}; UAT for {other}")


#: The most response bytes the segmentation case asks for (well under the 0x7FFF a node
#: offers by default, digest 4.4).
SEGMENTED_RESPONSE_BUDGET = 24_000


async def _segmentation(p: Probe) -> Outcome:
    """Full reads of Table 0, as many in one request as make it larger than the tester's
    segment size: the request goes as segments (2008 format, c1222-network.md), the target
    reassembles it, verifies its MAC over the whole APDU and answers every read; the answer,
    larger still, comes back whole or in segments the tester reassembles and verifies."""
    s, st = p.settings, p.state
    assert s.segment_size is not None and st.table0 is not None
    count = (s.segment_size + 64) // 4 + 1  # a full read is 4 bytes of EPSEM
    most = SEGMENTED_RESPONSE_BUDGET // (len(st.table0) + 8)
    if count > most:
        return untested(None, f"--segment-size {s.segment_size} needs {count} reads of Table 0 "
                              f"in one request, an answer over {SEGMENTED_RESPONSE_BUDGET} "
                              f"bytes: use at most {(most - 1) * 4 - 64}")
    sent, received = p.segments()
    seen = await p.ask([FullReadRequest(0)] * count, auth=True,
                       note=f"{count} full reads of Table 0 in one request, over "
                            f"--segment-size {s.segment_size}")
    if seen.code == ResponseCode.SGNP:
        return untested(seen, "the target does not reassemble segments (SGNP)")
    early = screen(seen, s, mandatory=True)
    if early is not None:
        return early
    reads = seen.responses[seen.prefix:]
    wrong = [i for i, r in enumerate(reads) if not isinstance(r, ReadResponse)
             or r.response_code != OK or r.table_data.data != st.table0]
    if len(reads) != count or wrong:
        first = reads[wrong[0]] if wrong else None
        what = (f"read {wrong[0] + 1} answered {code_text(first.response_code)}"
                if first is not None and first.response_code != OK else
                f"read {wrong[0] + 1} is not Table 0 as read before" if wrong else
                f"{len(reads)} answers to {count} reads")
        return failed(seen, f"the segmented request was not served whole: {what}")
    now_sent, now_received = p.segments()
    out, back = now_sent - sent, now_received - received
    if out < 2:
        return failed(seen, "the request did not go in segments (the tester's own fault: "
                            "report it)")
    answer = (f"in {back} segments, reassembled" if back else "whole (the target's segment "
              "size is larger)")
    return passed(seen, f"the request went in {out} segments; the answer came back {answer}; "
                        f"all {count} reads are Table 0")


async def _resolve(p: Probe) -> Outcome:
    return await _network_service(p, ResolveRequest, _judge_resolve)


async def _trace(p: Probe) -> Outcome:
    return await _network_service(p, TraceRequest, _judge_trace)


# --------------------------------------------------------------------------- negative cases


def _check_wrong_password(seen: Seen, s: CaseSettings, st: RunState) -> Outcome:
    if seen.code == OK:
        return failed(seen, "a wrong password was accepted")
    return expect_code(seen, ResponseCode.ISC)


async def _insufficient_clearance(p: Probe) -> Outcome:
    s = p.settings
    assert s.reader_password is not None
    login = await p.ask([SecurityRequest(s.reader_password, s.reader_id)])
    early = screen(login, s)
    if early is not None:  # a FAIL, or Security NOT SUPPORTED (SNS)
        return early
    if login.code != OK:
        return untested(login, f"the target rejects the reader login (user {s.reader_id}): "
                               f"{login.describe()}")
    original = p.state.original
    if original is None:  # no operator credentials: the reader reads it
        got = await p.ask([SecurityRequest(s.reader_password, s.reader_id),
                           FullReadRequest(s.write_table)])
        original = _read_data(got)
        if original is None:
            return untested(got, f"the reader cannot read table {s.write_table} to write it "
                                 f"back: {got.describe()}")
    seen = await p.ask([SecurityRequest(s.reader_password, s.reader_id),
                        FullWriteRequest(s.write_table, TableData(original))],
                       note="read-only user writes the table's own bytes")
    early = screen(seen, s, unsupported=False)
    if early is not None:
        return early
    if seen.code == OK:
        return failed(seen, f"a read-only user may write table {s.write_table} "
                            "(its own bytes were written back)")
    if seen.code == ResponseCode.IAR and not p.state.writable:
        return untested(seen, f"table {s.write_table} is read-only for every user (IAR); "
                              "choose a writable one with --write-table")
    return expect_code(seen, ResponseCode.ISC)


def _build_unknown_table(s: CaseSettings, st: RunState) -> Sequence[Request]:
    return [FullReadRequest(_unknown_table(s, st))]


def _unknown_table(s: CaseSettings, st: RunState) -> int:
    if s.unknown_table is not None:
        return s.unknown_table
    return st.unknown_table if st.unknown_table is not None else 2000


def _check_unknown_table(seen: Seen, s: CaseSettings, st: RunState) -> Outcome:
    table = _unknown_table(s, st)
    if seen.code == OK:
        return failed(seen, f"table {table}, which the target does not list, read OK")
    return passed(seen, f"table {table} refused with {_got(seen)}")


async def _bad_checksum(p: Probe) -> Outcome:
    s, st = p.settings, p.state
    original = st.original or b""
    good = TableData(original).computed_checksums()
    bad = TableData(original, checksums=bytes([good[0] ^ 0x01]) + good[1:])
    seen = await p.ask([FullWriteRequest(s.write_table, bad)], auth=True,
                       note="table data checksum off by one bit")
    early = screen(seen, s, unsupported=False)
    if early is not None:
        return early
    if seen.code == OK:
        changed = await _unchanged(p, "a write with a wrong checksum", seen)
        return changed or failed(seen, "a write with a wrong checksum was accepted")
    changed = await _unchanged(p, "a refused write", seen)
    return changed or passed(seen, f"refused with {_got(seen)}; table unchanged")


def _other_title(st: RunState) -> Uid:
    assert st.called is not None
    return Uid(st.called.absolute().arcs + (65_000,))


async def _unknown_ap_title(p: Probe) -> Outcome:
    other = _other_title(p.state)
    seen = await p.ask([IdentifyRequest()], called=other, note=f"called AP title {other}")
    early = screen(seen, p.settings, unsupported=False)
    if early is not None:
        return early
    if seen.code == OK:
        return failed(seen, f"answered OK for AP title {other}, which is not its own")
    return expect_code(seen, ResponseCode.UAT)


async def _insecure(p: Probe, **how: object) -> Outcome:
    seen = await p.ask([IdentifyRequest()], quiet=True, **how)  # type: ignore[arg-type]
    early = screen(seen, p.settings, unsupported=False, silence_ok=True)
    if early is not None:
        return early
    if seen.silent:
        return passed(seen, "dropped (no response)" if not seen.closed else
                      "the connection was closed")
    if seen.code == ResponseCode.SME:
        return passed(seen)
    if seen.code == OK:
        return failed(seen, "a message that does not verify was served")
    return failed(seen, f"expected SME or no response, got {_got(seen)}")


async def _bad_mac(p: Probe) -> Outcome:
    return await _insecure(p, corrupt_mac=True, note="one MAC bit flipped")


async def _unknown_key_id(p: Probe) -> Outcome:
    return await _insecure(p, key_id=-1, note="a key id the target does not have")


async def _oversized(p: Probe) -> Outcome:
    s, st = p.settings, p.state
    size = s.oversize
    body = FullWriteRequest(_unknown_table(s, st), TableData(bytes(size)))
    seen = await p.ask([body], quiet=True, note=f"{size} bytes of table data")
    early = screen(seen, s, unsupported=False, silence_ok=True)
    if early is not None:
        return early
    answer = seen.answer
    if not seen.silent:
        if seen.code != ResponseCode.RQTL:
            return failed(seen, f"expected RQTL for a request over {size} bytes, got "
                                f"{_got(seen)}")
        limit = answer.max_size if isinstance(answer, ErrorResponse) else None
        if limit is None or limit >= size:
            return failed(seen, f"RQTL names a maximum request size of {limit}, not below "
                                f"the {size} bytes sent")
    after = await p.ask([IdentifyRequest()], fresh_link=seen.closed)
    if not isinstance(after.answer, IdentifyResponse) or after.code != OK:
        return failed(after, f"Identify after the oversized request: {after.describe()}"
                             + (f" ({after.error})" if after.error else ""))
    who = seen.apdu.calling_ap_title if seen.apdu is not None and not seen.silent else None
    called = st.called
    if who is not None and called is not None and who.absolute() != called.absolute():
        # A relay on the path could not take it (its reassembly limit): the right answer too.
        return passed(seen, f"refused on the path by {who.absolute()}; Identify still "
                            "answered after it")
    return passed(seen, "Identify still answered after it")


# --------------------------------------------------------------------------- the suite


CASES: tuple[Case, ...] = (
    Case("identify", "Identify", "Identify (0x20), no called AP title until one is known",
         "OK, <std> 3 (C12.22)", mandatory=True,
         build=lambda s, st: [IdentifyRequest()],
         check=_simple(_check_identify, mandatory=True)),
    Case("full_read", "Full read", "Full read (0x30) of Table 0",
         "OK with Table 0 (its checksum right)", auth=True, mandatory=True,
         build=lambda s, st: [FullReadRequest(0)],
         check=_simple(_check_table0, mandatory=True)),
    Case("partial_read_offset", "Partial read offset", "Partial read offset (0x3F): Table 0 "
         "bytes 2..10", "OK with the same bytes as the full read", needs=("table0",),
         auth=True, mandatory=True, build=_build_partial_offset,
         check=_simple(_check_partial_offset, mandatory=True)),
    Case("partial_read_index", "Partial read index", "Partial read index (0x31): element 0 "
         "of the write table", "OK with the bytes the table starts with",
         steps=_partial_read_index),
    Case("default_read", "Default read", "Default read (0x3E)", "OK with table data",
         auth=True, build=lambda s, st: [DefaultReadRequest()],
         check=_simple(_check_default_read)),
    Case("security", "Security", "Security (0x51), 23-byte sessionless form: user id and "
         "password", "OK", needs=("credentials",),
         build=lambda s, st: [SecurityRequest(s.password or b"", s.user_id)],
         check=_simple(_check_ok)),
    Case("full_write", "Full write", "Full write (0x40) of the write table with the bytes it "
         "has; read back", "OK and the table unchanged", needs=("credentials",),
         steps=_full_write),
    Case("partial_write_offset", "Partial write offset", "Partial write offset (0x4F) of "
         "bytes 2..10 of the write table, unchanged; read back", "OK and the table "
         "unchanged", needs=("credentials",), steps=_partial_write_offset),
    Case("partial_write_index", "Partial write index", "Partial write index (0x41) of "
         "element 0, unchanged; read back", "OK and the table unchanged",
         needs=("credentials", "index"), steps=_partial_write_index),
    Case("out_of_sequence", "Logoff", "Logoff (0x52) without a Logon",
         "ISSS", needs=("no_session",),
         build=lambda s, st: [LogoffRequest()],
         check=_simple(lambda seen, s, st: expect_code(seen, ResponseCode.ISSS))),
    Case("logon", "Logon", "Logon (0x50): user id, 10-byte user name, idle time-out 60 s",
         "OK with the granted idle time-out", steps=_logon),
    Case("logon_twice", "Logon", "a second Logon in the open session", "ISSS",
         needs=("session",), steps=_logon_twice),
    Case("session_security", "Security", "Security (0x51), 21-byte form inside the session",
         "OK", needs=("session", "credentials"),
         build=lambda s, st: [SecurityRequest(s.password or b"")],
         check=_simple(_check_ok)),
    Case("wait", "Wait", f"Wait (0x70) {WAIT_SECONDS} s inside the session", "OK",
         needs=("session",), build=lambda s, st: [WaitRequest(WAIT_SECONDS)],
         check=_simple(_check_ok)),
    Case("logoff", "Logoff", "Logoff (0x52) of the session", "OK", needs=("session",),
         steps=_logoff),
    Case("terminate", "Terminate", "Logon, then Terminate (0x21); then Logoff",
         "OK, and the session is gone (the Logoff after it is refused)",
         needs=("logon",), steps=_terminate),
    Case("wrong_password", "Security", "Security with a wrong password", "ISC",
         build=lambda s, st: [SecurityRequest(s.wrong_password(), s.user_id)],
         check=_simple(_check_wrong_password)),
    Case("insufficient_clearance", "Full write", "a read-only user (--reader-id) writes the "
         "write table's own bytes", "ISC (the table is unchanged either way)",
         needs=("reader",), steps=_insufficient_clearance),
    Case("unknown_table", "Full read", "Full read of a table the target does not have (the "
         "first gap in Table 0's list, or --unknown-table)", "any refusal (SNS, ONP, IAR ...)",
         auth=True, build=_build_unknown_table,
         check=_simple(_check_unknown_table, unsupported=False)),
    Case("bad_checksum", "Full write", "Full write of the write table's own bytes with a "
         "wrong checksum", "a refusal (ERR, IAR ...) and the table unchanged",
         needs=("credentials", "writable"), steps=_bad_checksum),
    Case("unknown_ap_title", "Identify", "Identify called to another AP title (the target's "
         "with one more arc)", "UAT", needs=("called",), steps=_unknown_ap_title),
    Case("bad_mac", "Identify", "Identify with one MAC bit flipped", "SME or no response, "
         "never OK", modes=SECURED_MODES, steps=_bad_mac),
    Case("unknown_key_id", "Identify", "Identify secured with a key id the tester was not "
         "given", "SME or no response, never OK", modes=SECURED_MODES, steps=_unknown_key_id),
    Case("oversized", "Full write", "a request of --oversize bytes (40,000: over the 0x7FFF a "
         "node offers by default)", "RQTL with a smaller maximum, or the connection closed; "
         "Identify still works", steps=_oversized),
    Case("segmentation", "Full read", "Full reads of Table 0 in one request larger than "
         "--segment-size, sent as segments", "every read answered with Table 0 (the request "
         "reassembled and its MAC verified by the target; a segmented answer reassembled and "
         "verified by the tester); SGNP: not supported", needs=("segment_size", "table0"),
         auth=True, steps=_segmentation),
    Case("deregister_other", "Deregister", "Deregister (0x24) of a title no node has (the "
         "tester's with one more arc, .65000)", "UAT or OK", auth=True,
         build=lambda s, st: [DeregisterRequest(_unregistered_title(s))],
         check=_simple(_check_deregister_other)),
    Case("deregister", "Deregister", "Deregister of the target's own title (--deregister); "
         "then waits for it to register again", "OK, and (with --listen or --master-relay) the "
         "target registers again", needs=("deregister", "called"), steps=_deregister),
    Case("resolve", "Resolve", "Resolve (0x25) of the target's title (of the relay, when the "
         "target is reached through one), then of a title no node has", "OK with a native "
         "address that decodes (UAT also, from a target asked directly), then UAT; SNS from "
         "an end device: not supported", needs=("called",), steps=_resolve),
    Case("trace", "Trace", "Trace (0x26) of the target's title (of the relay, when the target "
         "is reached through one), then of a title no node has", "OK with a non-empty path of "
         "relay titles (UAT also, from a target asked directly), then UAT; SNS from an end "
         "device: not supported", needs=("called",), steps=_trace),
    Case("disconnect", "Disconnect", "Disconnect (0x22) on a connection of its own, last",
         "OK, then the target closes the TCP connection (through a relay: a session opened "
         "before is gone)", steps=_disconnect),
)

#: The Register case runs once per run (the target registers with the tester, --listen).
REGISTER = Case("register", "Register", "nothing: waits for the target's Register (0x27) "
                "on --listen", "a well-formed Register (node type, AP title, serial number, "
                "native address) from the target, answered OK")

#: Not run on its own: the row that says the target refused the tester's 4-byte invocation
#: ids the way a January-2008-draft device does, after the run fell back to smaller ones.
INVOCATION_ID = Case("invocation_id", "ACSE", "the run's first request, with a 4-byte calling "
                     "AP invocation id (A8)", "an answer in the form of C12.22 (appears only "
                     "when it was not, and a smaller size was answered)")

CASE_IDS = tuple(c.id for c in CASES) + (REGISTER.id,)
