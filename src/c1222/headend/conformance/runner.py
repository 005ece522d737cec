"""Runs the conformance suite against a C12.22 endpoint over the network.

The tester is one C12.22 node (one :class:`~c1222.transport.endpoint.Endpoint`, so one pcap
holds the whole run): it optionally listens as a registrar (``listen``) and waits for the
target's Register, then, for each transport and security mode asked for, connects to the
target and runs every case of :data:`~c1222.headend.conformance.cases.CASES` in order. Each
request is built by a :class:`~c1222.session.requester.Requester`; each response is checked
against the protocol rules before the case sees it.

A target behind a relay (docs/conformance.md "Through a relay") is reached with wire messages
only, so any relay will do: ``via_relay`` sends every request to that relay's address with the
target's title as the called AP title, and asks Resolve and Trace of the relay itself (its
title from ``relay_ap_title`` or its answer to an Identify without a called AP title);
``master_relay`` first registers the tester with the master relay as a notification host
(node type HOST | NOTIFICATION_HOST, as a head-end does), judges the notification Register
the master relay sends on the target's behalf as the Register case, then runs the suite
through the master relay the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from c1222.codec import acse, text
from c1222.codec.ber import Uid
from c1222.codec.redact import redact, redact_bytes
from c1222.codec.native import (
    decode_native_address,
    encode_native_address,
    native_address_text,
)
from c1222.codec.services import (
    DeregisterRequest,
    IdentifyRequest,
    RegisterRequest,
    RegisterResponse,
    Request,
    SecurityRequest,
    TerminateRequest,
    TraceRequest,
    TraceResponse,
)
from c1222.codec.segments import MIN_SEGMENT_SIZE
from c1222.codes import NodeType, ResponseCode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import RandomNonceSource, TimeIvSource
from c1222.errors import ConfigurationError, DecodeError, TransportError
from c1222.headend.conformance.cases import (
    CASES,
    INVOCATION_ID,
    REGISTER,
    Case,
    CaseSettings,
    Outcome,
    RunState,
    Seen,
    failed,
    passed,
    unmet,
    untested,
)
from c1222.headend.conformance.report import (
    CaseResult,
    ExchangeRecord,
    Report,
    Verdict,
    code_text,
)
from c1222.headend.conformance.draft import Refusal, explain
from c1222.headend.conformance.rules import (
    RELAY_NEED_NOT_SERVE,
    check_response,
    relay_need_not_serve,
)
from c1222.headend.registry import RegistrarServices
from c1222.session.requester import Requester
from c1222.session.responder import Reply, Responder, ResponderConfig
from c1222.transport.client import responses
from c1222.transport.endpoint import Address, Endpoint, EndpointLimits, Link, PcapTracer

log = logging.getLogger("c1222.conformance")

DEFAULT_TESTER_TITLE = "2.16.124.113620.1.22.0.123.4"
#: Requests the tester answers while it listens; a chatty target cannot grow the record.
#: Titles of other nodes' registrations remembered (to tell them from the target's new one).
MAX_TITLES_SEEN = 65536
MAX_ARRIVALS = 64
#: Invocation-id sizes (bytes) the tester tries, largest first, when --invocation-id-size is
#: not given: a January-2008-draft device answers 4-byte ids in March-2006 form (draft.py).
FALLBACK_SIZES = (4, 2, 1)


@dataclass
class Settings:
    """What to test, and how."""

    target: Address | None = None
    listen: Address | None = None
    modes: tuple[int, ...] = (0,)
    transports: tuple[str, ...] = ("tcp",)
    keys: KeyTable = field(default_factory=KeyTable)
    key_id: int | None = None
    called_ap_title: Uid | None = None
    cases: CaseSettings = field(default_factory=CaseSettings)
    timeout: float = 5.0  # for an answer
    quiet_timeout: float = 2.0  # where silence is an acceptable answer
    register_timeout: float = 30.0
    pcap: str | None = None
    only: frozenset[str] | None = None  # case ids to run (all when None)
    #: Bytes of every calling AP invocation id (A8); None: 4, falling back to 2 and 1 when
    #: the target answers the way a draft-era device does.
    invocation_id_size: int | None = None
    #: Reach the target through this relay (HOST:PORT), by its title (``called_ap_title``).
    via_relay: Address | None = None
    #: Register with this master relay as a notification host; its notification of the
    #: target is the Register case, and the suite runs through it.
    master_relay: Address | None = None
    relay_ap_title: Uid | None = None
    #: "node", "relay" or "auto" (a target that answers Trace of its own title with a path
    #: is judged as a relay: rules.RELAY_NEED_NOT_SERVE).
    target_role: str = "auto"

    @property
    def relay(self) -> Address | None:
        return self.via_relay or self.master_relay

    def validate(self) -> Settings:
        if self.via_relay is not None and self.master_relay is not None:
            raise ConfigurationError("give --via-relay or --master-relay, not both")
        if self.relay is not None:
            if self.target is not None or self.listen is not None:
                raise ConfigurationError("a target reached through a relay is named by its AP "
                                         "title (--called-ap-title), not HOST:PORT or --listen")
            if self.via_relay is not None and self.called_ap_title is None:
                raise ConfigurationError("--via-relay needs the target's --called-ap-title")
        elif self.target is None and self.listen is None:
            raise ConfigurationError("give the target's HOST:PORT, or --listen for it to "
                                     "register (its native address is used)")
        for mode in self.modes:
            if mode not in (0, 1, 2):
                raise ConfigurationError(f"security mode {mode}: 0, 1 or 2")
        for transport in self.transports:
            if transport not in ("tcp", "udp"):
                raise ConfigurationError(f"transport {transport}: tcp or udp")
        if any(self.modes) and not len(self.keys):
            raise ConfigurationError("security modes 1 and 2 need a key: --key ID:HEX")
        if self.key_id is not None and self.key_id not in self.keys:
            raise ConfigurationError(f"no --key for key id {self.key_id}")
        if self.only is not None:
            unknown = self.only - {c.id for c in CASES} - {REGISTER.id}
            if unknown:
                raise ConfigurationError(f"no such case: {', '.join(sorted(unknown))}")
        if self.cases.segment_size is not None and self.cases.segment_size < MIN_SEGMENT_SIZE:
            raise ConfigurationError(f"--segment-size: at least {MIN_SEGMENT_SIZE} bytes")
        if self.cases.oversize < 1:
            raise ConfigurationError("--oversize must be positive")
        if self.target_role not in ("auto", "node", "relay"):
            raise ConfigurationError(f"target role {self.target_role}: auto, node or relay")
        if self.invocation_id_size not in (None, *FALLBACK_SIZES):
            raise ConfigurationError(f"invocation id size {self.invocation_id_size}: 1, 2 or 4 "
                                     "bytes")
        return self

    @property
    def send_key_id(self) -> int | None:
        if self.key_id is not None:
            return self.key_id
        return min(self.keys) if len(self.keys) else None

    def wanted(self, case: Case) -> bool:
        return self.only is None or case.id in self.only


class Tester:
    """One conformance run. ``await Tester(settings).run()`` gives the :class:`Report`."""

    def __init__(self, settings: Settings, *,
                 on_listening: Callable[[Address], None] | None = None,
                 on_result: Callable[[CaseResult], None] | None = None) -> None:
        self.settings = settings.validate()
        self.on_listening = on_listening
        self.on_result = on_result
        self.title = settings.cases.calling_ap_title
        self.called = settings.called_ap_title
        self.tracer = PcapTracer(settings.pcap) if settings.pcap else None
        self.registrar = RegistrarServices(self.title)
        self.responder = Responder(ResponderConfig(ap_title=self.title, keys=settings.keys),
                                   self.registrar, RandomNonceSource())
        self.endpoint = Endpoint(
            self._on_request, tracer=self.tracer,
            limits_=EndpointLimits(segment_size=settings.cases.segment_size),
            on_link_closed=lambda link: self.responder.close(link.id),
            on_segment_error=lambda data, link, code: self.responder.refuse(data, code).data)
        # A8s of the size asked for; without one the size is settled by the first answer.
        self.id_size = settings.invocation_id_size or FALLBACK_SIZES[0]
        self.id_size_settled = settings.invocation_id_size is not None
        # Time-based IVs, as MeteringSDK sends and as meters checking IV freshness need.
        self.nonces = TimeIvSource(time.time, invocation_id_size=self.id_size)
        # Sizes not answered readably (the refusal; None: no answer) while the size was open.
        self.refused_sizes: list[tuple[int, Refusal | None, ExchangeRecord]] = []
        self.confirming: int | None = None  # a smaller size answered; the first is re-tried
        self.fallback_reported = False
        # Per link: where an answer the tester cannot read goes while a probe waits on it.
        self.catches: dict[int, asyncio.Future[bytes]] = {}
        self.arrivals: list[tuple[Link, bytes, Reply]] = []
        self.registration: tuple[Link, bytes, Reply] | None = None
        self.registrations = 0  # Registers of the target seen (notifications included)
        self.reregistered_as: Uid | None = None  # its new title, when it took another
        # Titles other nodes registered under (bounded): one of them registering again is
        # another device, however its serial number reads, never the target under a new title.
        self.titles_seen: set[str] = set()
        self._arrived: asyncio.Event | None = None
        self.links: dict[tuple[int, str], Link] = {}
        self.target: Address | None = settings.target or settings.relay
        self.contact = False  # the target has answered something
        self.listening: Address | None = None
        self.relay_title: Uid | None = settings.relay_ap_title
        self.master_link: Link | None = None

    # ------------------------------------------------------------------ the run

    async def run(self) -> Report:
        s = self.settings
        report = Report(target=None, called_ap_title=None, calling_ap_title=str(self.title),
                        modes=list(s.modes), transports=list(s.transports),
                        started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                        invocation_id_size=self.id_size)
        began = time.monotonic()
        self._arrived = asyncio.Event()
        try:
            if s.master_relay is not None:
                if not await self._join_master(report):
                    return
                if s.wanted(REGISTER):
                    self._emit(report, await self._register_case())
                else:
                    await self._wait_registration()
                if self.called is None and self.registration is not None:
                    request = self._registered_request()
                    self.called = request.ap_title.absolute() if request.ap_title.arcs else None
                if self.called is None:
                    report.error = (f"no notification of a node within "
                                    f"{s.register_timeout:g} s: give --called-ap-title")
                    return
            elif s.via_relay is not None:
                await self._find_relay(report)
            if s.listen is not None:
                try:
                    self.listening = await self.endpoint.listen(*s.listen)
                except OSError as exc:
                    raise ConfigurationError(f"cannot listen on {s.listen[0]}:{s.listen[1]}: "
                                             f"{exc.strerror or exc}") from None
                if self.on_listening is not None:
                    self.on_listening(self.listening)
                if s.wanted(REGISTER):
                    self._emit(report, await self._register_case())
                else:
                    await self._wait_registration()
            elif s.wanted(REGISTER) and s.master_relay is None:
                self._emit(report, CaseResult(
                    REGISTER.id, REGISTER.service, None, None, Verdict.NOT_TESTED,
                    "needs --listen (the target registers with the tester) or --master-relay "
                    "(the master relay notifies the tester of it)"))
            if self.target is None:
                self.target = self._registered_address(report)
            if self.target is not None:
                report.target = f"{self.target[0]}:{self.target[1]}"
                if s.relay is not None:
                    report.notes.append(
                        f"the target is reached through the {'master ' * bool(s.master_relay)}"
                        f"relay {self.relay_title or '(title unknown)'} at {report.target}; "
                        "Resolve and Trace are asked of that relay")
                await self._run_all(report)
        finally:
            report.called_ap_title = str(self.called.absolute()) if self.called else None
            report.invocation_id_size = self.id_size
            report.duration = time.monotonic() - began
            await self.close()
        return report

    async def _run_all(self, report: Report) -> None:
        for transport in self.settings.transports:
            for mode in self.settings.modes:
                await self._run_suite(mode, transport, report)
                if report.error is not None:
                    return

    async def close(self) -> None:
        await self._leave_master()
        await self.endpoint.close()
        if self.tracer is not None:
            self.tracer.close()
            self.tracer = None

    def _emit(self, report: Report, result: CaseResult) -> None:
        report.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    # ------------------------------------------------------------------ one mode, one transport

    async def _run_suite(self, mode: int, transport: str, report: Report) -> None:
        s = self.settings
        state = RunState(mode=mode, transport=transport, called=self.called,
                         via=s.relay is not None,
                         relay=self.relay_title if s.relay is not None else None)
        requester = Requester(self.title, self.nonces, keys=s.keys, security_mode=mode,
                              key_id=s.send_key_id if mode else None)
        try:
            for case in CASES:
                if mode not in case.modes or not s.wanted(case):
                    continue
                began = time.monotonic()
                probe = _Probe(self, state, requester)
                why = unmet(case, s.cases, state)
                if why is not None:
                    outcome = untested(None, why)
                else:
                    outcome = await self._run_case(case, probe)
                if state.relay_target and outcome.verdict is not Verdict.PASS:
                    code = outcome.seen.code if outcome.seen is not None else None
                    why = relay_need_not_serve(case.id, code)
                    if why is not None:
                        outcome = untested(outcome.seen, why)
                result = _result(case, state, outcome, probe.records, time.monotonic() - began)
                state.verdicts[case.id] = result.verdict
                if case.id == "identify":
                    stop, refused = self._after_identify(outcome, state, report)
                    if report.error is not None:
                        return
                    if refused is not None:
                        result.verdict, result.reason = Verdict.NOT_TESTED, refused
                    if stop:
                        # One row says it; the mode's other cases are not listed.
                        self._emit(report, result)
                        self._report_fallback(report, state)
                        return
                self._emit(report, result)
                self._report_fallback(report, state)
                if case.id == "identify":
                    await self._judge_role(state, requester, report)
        finally:
            await self._end_run(state, requester)

    async def _run_case(self, case: Case, probe: _Probe) -> Outcome:
        try:
            if case.steps is not None:
                return await case.steps(probe)
            assert case.build is not None and case.check is not None
            seen = await probe.ask(case.build(self.settings.cases, probe.state), auth=case.auth)
            return case.check(seen, self.settings.cases, probe.state)
        except Exception as exc:  # noqa: BLE001 - the tester's own failure ends one case only
            log.warning("case %s: tester error", case.id, exc_info=True)
            return untested(None, f"tester error: {exc!r}")

    def _after_identify(self, outcome: Outcome, state: RunState, report: Report
                        ) -> tuple[bool, str | None]:
        """Learn the target's title. Whether to stop this mode and transport (the target does
        not answer, or refuses the security mode outright), and the NOT TESTED reason when it
        refuses. Sets ``report.error`` when the target has never answered anything."""
        seen = outcome.seen
        where = f"mode {state.mode} over {state.transport}"
        if seen is None:
            return False, None
        if seen.error is not None and not seen.responses:
            if not self.contact:
                host, port = self.target or ("?", 0)
                sizes = [str(n) for n, _, _ in self.refused_sizes]
                tried = f" (sent with {', '.join(sizes)}-byte invocation ids)" \
                    if len(sizes) > 1 else ""
                report.error = (f"cannot reach the target at {host}:{port} over "
                                f"{state.transport}: {seen.error}{tried}")
            elif seen.refusal is not None:  # it answered, in a form the tester cannot read
                report.notes.append(f"{where}: the answer to Identify was refused "
                                    f"({seen.refusal.short}); the other cases were not run")
            else:  # Identify FAILs; the other cases would only wait out their time-outs
                report.notes.append(f"{where}: no answer to Identify ({seen.error}); the "
                                    "other cases were not run")
            return True, None
        if seen.code == ResponseCode.SME and not seen.violations:
            report.notes.append(f"{where}: the target refuses this security mode or key "
                                "(SME to Identify); not tested")
            return True, (f"the target refuses security mode {state.mode} with this key "
                          "(SME): the mode's other cases were not run")
        if seen.apdu is not None and self.called is None and seen.apdu.calling_ap_title:
            self.called = seen.apdu.calling_ap_title
            state.called = self.called
        return False, None

    async def _end_run(self, state: RunState, requester: Requester) -> None:
        link = self.links.pop((state.mode, state.transport), None)
        if link is None or link.closed:
            return
        if state.session:  # leave no session open on the target
            probe = _Probe(self, state, requester)
            probe.links_key = (state.mode, state.transport)
            self.links[probe.links_key] = link
            try:
                await probe.ask([TerminateRequest()])
            finally:
                self.links.pop(probe.links_key, None)
        if link.transport == "tcp":
            link.close()

    # ------------------------------------------------------------------ links

    async def link(self, state: RunState, *, fresh: bool = False) -> Link:
        key = (state.mode, state.transport)
        link = self.links.get(key)
        if link is not None and fresh and link.transport == "tcp":
            link.close()
        if link is None or link.closed:
            assert self.target is not None
            link = await self.endpoint.connect(*self.target, state.transport,
                                               self.settings.timeout)
            self.links[key] = link
            if state.transport == "tcp":
                state.session = False  # sessions belong to the connection
        return link

    def unknown_key_id(self) -> int:
        return next(k for k in range(255, -1, -1) if k not in self.settings.keys)

    # ------------------------------------------------------------------ invocation-id size

    def retry_size(self, seen: Seen, record: ExchangeRecord, *, quiet: bool = False
                   ) -> int | None:
        """The invocation-id size to send ``seen``'s request again with, or None.

        Until the first readable answer settles the size, a January-2008-draft device shows
        that it cannot read our A8 (draft.py) in one of two ways: it answers in March-2006 form,
        or — behind a comm module that drops that answer — not at all. Either makes the tester
        try 2 bytes, then 1. Silence is only taken so for the run's first answer (not where
        silence is a valid answer), and only once the first size, tried again after a smaller
        one was answered, is still not answered: a target that was merely slow is not blamed.
        """
        if self.id_size_settled:
            return None
        if self.confirming is not None:
            smaller, self.confirming = self.confirming, None
            if seen.apdu is not None:  # the first size is answered now: the silence was not it
                self.refused_sizes.clear()
                self.id_size_settled = True
                return None
            return self._use_size(smaller, settled=True)  # so the case gets its answer
        draft = seen.refusal is not None and seen.refusal.draft
        silent = seen.silent and not seen.closed and not quiet and not self.contact
        if seen.apdu is not None and any(r is None for _, r, _ in self.refused_sizes):
            self.confirming = self.id_size
            return self._use_size(self.refused_sizes[0][0])
        if not (draft or silent):
            # Silence settles nothing (the next exchange may still tell); any answer does.
            self.id_size_settled = seen.apdu is not None or seen.refusal is not None
            return None
        self.refused_sizes.append((self.id_size, seen.refusal, record))
        smaller = [n for n in FALLBACK_SIZES if n < self.id_size]
        if not smaller:
            self.id_size_settled = True
            return None
        log.info("no readable answer to a %d-byte invocation id; trying %d bytes", self.id_size,
                 smaller[0])
        return self._use_size(smaller[0])

    def _use_size(self, size: int, *, settled: bool = False) -> int:
        self.id_size = size
        self.nonces = TimeIvSource(time.time, invocation_id_size=size)
        self.id_size_settled = settled
        return size

    def _report_fallback(self, report: Report, state: RunState) -> None:
        """Once the size is settled after a fallback: one FAIL row and a note saying so."""
        if not self.refused_sizes or not self.id_size_settled or self.fallback_reported:
            return
        self.fallback_reported = True
        first, refusal, record = self.refused_sizes[0]
        tried = ", ".join(str(n) for n, _, _ in self.refused_sizes)
        where = f"mode {state.mode} over {state.transport}"
        timeout = f"{self.settings.timeout:g} s"
        if refusal is None:
            got = f"no answer within {timeout}, twice, while smaller ones were answered"
            how = ("got no answer, as a device on the January-2008 draft of C12.22 behind a "
                   "comm module that drops its March-2006-form answer does")
        else:
            got = refusal.text
            how = ("was answered in March-2006 form, as a device on the January-2008 draft of "
                   "C12.22 does")
        if self.refused_sizes[-1][0] == self.id_size:  # every size was refused
            report.notes.append(f"{where}: the target did not answer {tried}-byte invocation "
                                "ids readably; nothing it says can be read")
            answered = "no smaller size was answered readably either"
        else:
            report.notes.append(
                f"{where}: a {first}-byte invocation id (A8) {how}; {self.id_size}-byte ones are "
                f"answered, so the run used {self.id_size}-byte invocation ids "
                f"(--invocation-id-size {self.id_size} starts with them)")
            answered = f"it answers {self.id_size}-byte ids, which the run used"
        reason = (f"a {first}-byte calling AP invocation id (A8), which C12.22 allows (up to 4 "
                  f"bytes, digest 1.2), is not read as C12.22: {got}; {answered}")
        self._emit(report, CaseResult(INVOCATION_ID.id, INVOCATION_ID.service, state.mode,
                                      state.transport, Verdict.FAIL, reason,
                                      refusal.short if refusal else "no response", 0.0, [record]))

    # ------------------------------------------------------------------ registration

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        catch = self.catches.get(link.id)
        if catch is not None and not catch.done():
            # The endpoint hands over what is not the awaited response: a request of the
            # target's, an answer to another request, or bytes whose A4 does not decode. The
            # last is the answer the probe waits for, in a form it cannot read: end its wait
            # now (not after its time-out) and keep it from the registrar.
            try:
                acse.called_invocation_id(data)
            except DecodeError:
                catch.set_result(data)
                return None, False
        reply = self.responder.receive(data, link.id, time.time())
        if reply.data is None:
            return reply.data, reply.close
        if self.relay_title is None and link is self.master_link and reply.request is not None \
                and reply.request.calling_ap_title is not None:
            # The master relay's catch-up can arrive before the answer to our Register is read
            # (which names it): a request on our own connection to it comes from it.
            self.relay_title = reply.request.calling_ap_title.absolute()
        if len(self.arrivals) < MAX_ARRIVALS:  # the records; a master relay tells of many
            self.arrivals.append((link, data, reply))
        if _is_registration(reply) and self._is_target(reply):
            if self.registration is None:
                self.registration = (link, data, reply)
            self.registrations += 1  # the deregister case waits for the next one
        elif self.registration is not None and _is_registration(reply) and \
                self._same_device(reply):
            self.registrations += 1  # registered again under a new title (c1222.md 7.3)
            self.reregistered_as = _register_request(reply).ap_title.absolute()
        if _is_registration(reply) and len(self.titles_seen) < MAX_TITLES_SEEN:
            self.titles_seen.add(str(_register_request(reply).ap_title.absolute()))
        assert self._arrived is not None
        self._arrived.set()
        return reply.data, reply.close

    def _same_device(self, reply: Reply) -> bool:
        """A Register (or the master relay's notification of one) of the target's serial
        number under another title: a node that forgot its title after a Deregister."""
        if self.settings.master_relay is not None and not self._from_master(reply):
            return False
        assert self.registration is not None
        first = _register_request(self.registration[2])
        request = _register_request(reply)
        return (request.serial_number == first.serial_number
                and str(request.ap_title.absolute()) not in self.titles_seen)

    def _from_master(self, reply: Reply) -> bool:
        assert reply.request is not None
        calling = reply.request.calling_ap_title
        return calling is not None and self.relay_title is not None and \
            calling.absolute() == self.relay_title.absolute()

    async def registered_again(self, after: int, seconds: float) -> bool:
        """Whether the target registers (again) beyond ``after`` registrations in time."""
        assert self._arrived is not None
        deadline = time.monotonic() + seconds
        while self.registrations <= after:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        if self.reregistered_as is not None:
            self.called = self.reregistered_as  # the next modes reach it by its new title
        return True

    async def _wait_registration(self) -> None:
        assert self._arrived is not None
        deadline = time.monotonic() + self.settings.register_timeout
        while self.registration is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    async def _register_case(self) -> CaseResult:
        began = time.monotonic()
        await self._wait_registration()
        records = [_arrival_record(link, data, reply) for link, data, reply in self.arrivals]
        outcome = self._judge_registration()
        return CaseResult(REGISTER.id, REGISTER.service, None, None, outcome.verdict,
                          outcome.reason, _registration_seen(self.registration),
                          time.monotonic() - began, records)

    def _judge_registration(self) -> Outcome:
        wait = self.settings.register_timeout
        if self.registration is None:
            if self.arrivals:
                _, data, reply = self.arrivals[0]
                return failed(None, "the target's request was refused: "
                                    + _refusal(data, reply, self.title))
            if self.settings.master_relay is not None:
                named = f"of {self.called} " if self.called is not None else "of an end device "
                return failed(None, f"no notification {named}from the master relay "
                                    f"{self.relay_title} within {wait:g} s (is the target "
                                    "registered with it?)")
            listen = self.listening or ("?", 0)
            return failed(None, f"no Register within {wait:g} s (point the target at "
                                f"{listen[0]}:{listen[1]} as its registrar)")
        link, _, reply = self.registration
        assert reply.request is not None
        request = next(s for s in reply.request.epsem.services
                       if isinstance(s, RegisterRequest))
        problems = _register_problems(request, reply, self.called, self.relay_title
                                      if self.settings.master_relay is not None else None)
        if problems:
            return failed(None, "; ".join(problems))
        if self.called is None and request.ap_title.arcs:
            self.called = request.ap_title
        told = (f"notified by the master relay {self.relay_title}; "
                if self.settings.master_relay is not None else "")
        return passed(None, told + f"node type {request.node_type:#04x}, serial "
                            f"{request.serial_number}, native address "
                            f"{native_address_text(request.native_address)}, period "
                            f"{request.registration_period} s; over {link.transport} in "
                            f"security mode {reply.request.epsem.security_mode}")

    # ------------------------------------------------------------------ through a relay

    async def _judge_role(self, state: RunState, requester: Requester, report: Report
                          ) -> None:
        """Whether the target is a relay: --target-role, or (auto) its answer to Trace of its
        own title — a relay answers with a path that holds it; an end device SNS."""
        role = self.settings.target_role
        if role == "relay":
            state.relay_target = True
        only = self.settings.only
        if role != "auto" or state.via or state.called is None or (
                only is not None and not only & RELAY_NEED_NOT_SERVE):
            return  # nothing the role changes is run
        probe = _Probe(self, state, requester)
        seen = await probe.ask([TraceRequest(state.called)], note="is the target a relay?")
        answer = seen.answer
        own = state.called.absolute()
        if isinstance(answer, TraceResponse) and answer.response_code == ResponseCode.OK and \
                any(t.absolute() == own for t in answer.ap_titles):
            state.relay_target = True
            note = (f"the target answers Trace of its own title ({own}) with a path: judged as "
                    "a relay (services it need not serve: docs/conformance.md)")
            if note not in report.notes:
                report.notes.append(note)

    def _is_target(self, reply: Reply) -> bool:
        """With --master-relay, only the notification of the target is its registration (the
        master relay tells of every node); otherwise any Register is."""
        if self.settings.master_relay is None:
            return True
        assert reply.request is not None
        calling = reply.request.calling_ap_title
        if calling is None or self.relay_title is None or \
                calling.absolute() != self.relay_title.absolute():
            return False
        request = next(s for s in reply.request.epsem.services
                       if isinstance(s, RegisterRequest))
        if self.called is not None:
            return request.ap_title.absolute() == self.called.absolute()
        return bool(request.ap_title.arcs) and not request.node_type & (
            NodeType.RELAY | NodeType.MASTER_RELAY | NodeType.HOST)

    def _relay_requester(self) -> Requester:
        mode = max(self.settings.modes)
        return Requester(self.title, self.nonces, keys=self.settings.keys, security_mode=mode,
                         key_id=self.settings.send_key_id if mode else None)

    async def _join_master(self, report: Report) -> bool:
        """Register with the master relay as a notification host and keep the link open (its
        notifications come over it). False, with report.error, when it cannot."""
        s = self.settings
        assert s.master_relay is not None
        host, port = s.master_relay
        requester = self._relay_requester()
        try:
            link = await self.endpoint.connect(host, port, "tcp", s.timeout)
            self.master_link = link
            request = RegisterRequest(
                node_type=NodeType.HOST | NodeType.NOTIFICATION_HOST, connection_type=0xF0,
                device_class=bytes(4), ap_title=self.title, serial_number=Uid.parse(".1"),
                native_address=encode_native_address(*link.local),
                registration_period=max(60, int(s.register_timeout) * 2))
            pending = requester.request([request], self.relay_title)
            data = await self.endpoint.exchange(link, pending.data, pending.invocation_id,
                                                timeout=s.timeout)
            apdu = requester.accept(data, pending, time.time())
        except (TransportError, DecodeError, ConfigurationError) as exc:
            report.error = f"cannot register with the master relay at {host}:{port}: {exc}"
            return False
        except Exception as exc:  # noqa: BLE001 - a refused or unreadable answer
            report.error = (f"the master relay at {host}:{port} did not accept the tester's "
                            f"Register: {exc}")
            return False
        found = responses(apdu)
        if not found or not isinstance(found[0], RegisterResponse):
            code = found[0].response_code if found else None
            report.error = (f"the master relay at {host}:{port} refused the tester's Register: "
                            f"{code_text(code)}")
            return False
        if apdu.calling_ap_title is not None and apdu.calling_ap_title.arcs:
            self.relay_title = apdu.calling_ap_title.absolute()
        report.notes.append(f"registered with the master relay {self.relay_title} at "
                            f"{host}:{port} as a notification host")
        return True

    async def _leave_master(self) -> None:
        """Deregister from the master relay at the end of the run, so that it stops notifying
        a tester that is gone (best effort: its registration expires anyway)."""
        link = self.master_link
        if link is None or link.closed:
            return
        requester = self._relay_requester()
        pending = requester.request([DeregisterRequest(self.title)], self.relay_title)
        with contextlib.suppress(TransportError, asyncio.TimeoutError):
            await self.endpoint.exchange(link, pending.data, pending.invocation_id,
                                         timeout=min(2.0, self.settings.timeout))

    async def _find_relay(self, report: Report) -> None:
        """The relay's title, from its answer to an Identify without a called AP title."""
        if self.relay_title is not None:
            return
        s = self.settings
        assert s.via_relay is not None
        requester = self._relay_requester()
        link = None
        try:
            link = await self.endpoint.connect(*s.via_relay, "tcp", s.timeout)
            pending = requester.request([IdentifyRequest()], None)
            data = await self.endpoint.exchange(link, pending.data, pending.invocation_id,
                                                timeout=s.timeout)
            header = acse.decode(data) if data else None
        except (TransportError, DecodeError) as exc:
            report.notes.append(f"the relay at {s.via_relay[0]}:{s.via_relay[1]} did not tell "
                                f"its title ({exc}): Resolve and Trace go to the target")
            return
        finally:
            if link is not None:
                link.close()
        if header is not None and header.calling_ap_title is not None and \
                header.calling_ap_title.arcs:
            self.relay_title = header.calling_ap_title.absolute()

    def _registered_request(self) -> RegisterRequest:
        assert self.registration is not None and self.registration[2].request is not None
        return next(s for s in self.registration[2].request.epsem.services
                    if isinstance(s, RegisterRequest))

    def _registered_address(self, report: Report) -> Address | None:
        if self.registration is None:
            report.error = ("the target did not register and no HOST:PORT was given: "
                            "nothing to test")
            return None
        link, _, reply = self.registration
        assert reply.request is not None
        request = next(s for s in reply.request.epsem.services
                       if isinstance(s, RegisterRequest))
        try:  # binary (codec.native) or ASCII host:port, IP literals only
            host, port = decode_native_address(request.native_address)
        except DecodeError:
            native = native_address_text(request.native_address)
            report.error = (f"the target registered with native address {native!r}, which "
                            "is not an IP address and port: give its address")
            return None
        if host in ("0.0.0.0", "::", ""):
            host = link.peer[0]  # it listens everywhere: reach it where it came from
        return host, port


class _Probe:
    """What a case may do: :class:`~c1222.headend.conformance.cases.Probe`."""

    def __init__(self, tester: Tester, state: RunState, requester: Requester) -> None:
        self.tester = tester
        self._state = state
        self.requester = requester
        self.records: list[ExchangeRecord] = []
        self.links_key = (state.mode, state.transport)

    @property
    def state(self) -> RunState:
        return self._state

    @property
    def settings(self) -> CaseSettings:
        return self.tester.settings.cases

    async def ask(self, services: Sequence[Request], *, auth: bool = False,
                  called: Uid | None | bool = True, key_id: int | None = None,
                  corrupt_mac: bool = False, quiet: bool = False, fresh_link: bool = False,
                  note: str | None = None) -> Seen:
        settings, cases = self.tester.settings, self.settings
        services = list(services)
        # A relay's own tables are read without passwords (c1222-network.md "Roles"): against
        # a relay the reads go without the Security of --password (its Security case still
        # sends it, and a refusal there is judged by rules.RELAY_NEED_NOT_SERVE).
        with_credentials = auth and cases.credentials and not self.state.relay_target
        if with_credentials:
            assert cases.password is not None
            services.insert(0, SecurityRequest(cases.password, cases.user_id))
        title = self.state.called if called is True else (None if called is False else called)
        requester = self.requester
        if key_id == -1 and self.state.mode:
            # A key id the tester was not given, with a random key: the target cannot know it.
            kid = self.tester.unknown_key_id()
            keys = KeyTable()
            keys.update(self.tester.settings.keys)
            keys.set(kid, os.urandom(16))
            requester = Requester(self.tester.title, self.tester.nonces, keys=keys,
                                  security_mode=self.state.mode, key_id=kid)
        timeout = settings.quiet_timeout if quiet else settings.timeout
        while True:
            seen = Seen(tuple(services), prefix=int(with_credentials), auth_requested=auth,
                        with_credentials=with_credentials)
            record = await self._once(seen, requester, title, corrupt_mac=corrupt_mac,
                                      fresh_link=fresh_link, timeout=timeout, note=note)
            size = self.tester.retry_size(seen, record, quiet=quiet)
            if size is None:
                return seen
            last = "answered in March-2006 form" if seen.refusal is not None else \
                "not answered" if seen.apdu is None else "answered"
            note = f"sent again with a {size}-byte invocation id (the last was {last})"

    async def _once(self, seen: Seen, requester: Requester, title: Uid | None, *,
                    corrupt_mac: bool, fresh_link: bool, timeout: float,
                    note: str | None) -> ExchangeRecord:
        """One request and its answer into ``seen``; the record of the exchange."""
        pending = requester.request(seen.requests, title,
                                    invocation_id=self.tester.nonces.invocation_id())
        data = pending.data
        if corrupt_mac:
            data = data[:-1] + bytes([data[-1] ^ 0x01])  # the MAC is the last 4 bytes
        record = ExchangeRecord(self.state.transport,  # the report never holds a password
                                redact_bytes(data, pending.apdu).hex(),
                                request=text.to_json(redact(pending.apdu)), note=note)
        self.records.append(record)
        try:
            link = await self.tester.link(self.state, fresh=fresh_link)
        except TransportError as exc:
            seen.error = record.error = str(exc)
            return record
        try:
            raw, matched = await self._answer(link, data, pending.invocation_id, timeout)
        except TransportError as exc:
            seen.silent, seen.closed = True, link.closed
            seen.error = record.error = ("the connection was closed" if link.closed
                                         else f"no response within {timeout:g} s")
            log.debug("%s: %s", link, exc)
            return record
        self.tester.contact = True
        record.response_hex = raw.hex()
        apdu, problems = check_response(pending.apdu, raw, requester.keys) if matched \
            else (None, [])
        if apdu is None:
            # Say what came back and why it was refused, not "no response".
            refusal = explain(raw, pending.requests, sent_a8=_a8_contents(pending.apdu),
                              why=problems[0] if problems else None)
            if matched and not refusal.draft:
                seen.error = record.error = problems[0]
            else:
                seen.refusal = refusal
                seen.error = record.error = f"the answer was refused: {refusal.text}"
            return record
        record.response = text.to_json(apdu)
        record.violations = list(problems)
        seen.violations = list(problems)
        seen.responses = responses(apdu)
        seen.apdu = apdu
        return record

    async def _answer(self, link: Link, data: bytes, invocation_id: int, timeout: float
                      ) -> tuple[bytes, bool]:
        """Send ``data``; the answer and whether it is the response to ``invocation_id``
        (False: bytes the tester cannot read came back instead). TransportError when nothing
        came back in time or the link closed."""
        tester = self.tester
        catch: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        tester.catches[link.id] = catch
        exchange = asyncio.ensure_future(
            tester.endpoint.exchange(link, data, invocation_id, timeout=timeout))
        try:
            await asyncio.wait((exchange, catch), return_when=asyncio.FIRST_COMPLETED)
            if catch.done():
                return catch.result(), False
            return exchange.result(), True
        finally:
            if tester.catches.get(link.id) is catch:
                del tester.catches[link.id]
            if not exchange.done():
                exchange.cancel()
            with contextlib.suppress(asyncio.CancelledError, TransportError):
                await exchange

    def segments(self) -> tuple[int, int]:
        stats = self.tester.endpoint.stats
        return stats["segments_sent"], stats["segments_received"]

    @property
    def registrations(self) -> int:
        return self.tester.registrations

    @property
    def sees_registrations(self) -> str | None:
        s = self.tester.settings
        if s.master_relay is not None:
            return f"the master relay's notification ({self.tester.relay_title})"
        return "a Register to the tester" if s.listen is not None else None

    @property
    def register_timeout(self) -> float:
        return self.tester.settings.register_timeout

    async def registered_again(self, after: int, seconds: float) -> Uid | None | bool:
        if not await self.tester.registered_again(after, seconds):
            return False
        return self.tester.reregistered_as or True

    async def link_closes(self, seconds: float) -> bool:
        link = self.tester.links.get(self.links_key)
        deadline = time.monotonic() + seconds
        while link is not None and not link.closed:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


# --------------------------------------------------------------------------- helpers


def _result(case: Case, state: RunState, outcome: Outcome, records: list[ExchangeRecord],
            duration: float) -> CaseResult:
    verdict, reason = outcome.verdict, outcome.reason
    broken = [v for r in records for v in r.violations]
    if broken and verdict is not Verdict.FAIL:
        # A rule broken by any response of the case fails it, whatever the service said.
        verdict, reason = Verdict.FAIL, "protocol: " + "; ".join(dict.fromkeys(broken))
    response = outcome.seen.describe() if outcome.seen is not None else "-"
    return CaseResult(case.id, case.service, state.mode, state.transport, verdict, reason,
                      response, duration, records)


def _register_request(reply: Reply) -> RegisterRequest:
    assert reply.request is not None
    return next(s for s in reply.request.epsem.services if isinstance(s, RegisterRequest))


def _is_registration(reply: Reply) -> bool:
    if reply.request is None or reply.response is None:
        return False
    asked = any(isinstance(s, RegisterRequest) for s in reply.request.epsem.services)
    granted = any(isinstance(s, RegisterResponse) for s in reply.response.epsem.services)
    return asked and granted


def _register_problems(request: RegisterRequest, reply: Reply, called: Uid | None,
                       notifier: Uid | None = None) -> list[str]:
    problems = []
    roles = request.node_type & 0x3F
    if not roles:
        problems.append(f"node type {request.node_type:#04x} names no role (digest 7.1)")
    if request.node_type & NodeType.RESERVED:
        problems.append(f"node type {request.node_type:#04x} sets the reserved bit 6")
    if called is not None and request.ap_title.arcs and \
            request.ap_title.absolute() != called.absolute():
        problems.append(f"registers AP title {request.ap_title}, but the target is {called}")
    if not request.serial_number.arcs:
        problems.append("empty serial number")
    if not request.native_address:
        problems.append("empty native address")
    assert reply.request is not None
    calling = reply.request.calling_ap_title
    if notifier is not None:  # a notification: the master relay calls, for the node
        if calling is None or calling.absolute() != notifier.absolute():
            problems.append(f"the notification's calling AP title {calling} is not the master "
                            f"relay's ({notifier})")
        if not request.ap_title.arcs:
            problems.append("the notification names no AP title")
    elif calling is not None and request.ap_title.arcs and \
            calling.absolute() != request.ap_title.absolute():
        problems.append(f"the message's calling AP title {calling} is not the title it "
                        f"registers ({request.ap_title})")
    return problems


def _registration_seen(registration: tuple[Link, bytes, Reply] | None) -> str:
    if registration is None:
        return "no Register"
    _, _, reply = registration
    assert reply.request is not None
    title = reply.request.calling_ap_title
    request = next((s for s in reply.request.epsem.services if isinstance(s, RegisterRequest)),
                   None)
    if request is not None and title is not None and request.ap_title.arcs and \
            request.ap_title.absolute() != title.absolute():  # a master relay's notification
        return f"Register of {request.ap_title.absolute()} from {title.absolute()}"
    return f"Register from {title.absolute() if title else 'an untitled node'}"


def _arrival_record(link: Link, data: bytes, reply: Reply) -> ExchangeRecord:
    record = ExchangeRecord(link.transport, data.hex(), direction="in",
                            response_hex=reply.data.hex() if reply.data else None)
    if reply.request is not None:
        record.request_hex = redact_bytes(data, reply.request).hex()
        record.request = text.to_json(redact(reply.request))
    if reply.response is not None:
        record.response = text.to_json(reply.response)
    return record


def _refusal(data: bytes, reply: Reply, title: Uid) -> str:
    code = None
    if reply.response is not None:
        found = responses(reply.response)
        code = found[0].response_code if found else None
    detail = ""
    try:
        header = acse.decode(data)
        if header.called_ap_title is not None and \
                header.called_ap_title.absolute() != title.absolute():
            detail = f" (it called {header.called_ap_title}, the tester is {title})"
    except DecodeError:
        pass
    if code == ResponseCode.SME:
        detail = " (its security does not verify with the tester's keys)"
    return f"{code_text(code)}{detail}"


def _a8_contents(apdu: acse.Apdu) -> bytes:
    """The contents of the A8 element the tester sent (``02 len value``)."""
    element = acse.header_elements(apdu)[acse.TAG_CALLING_AP_INVOCATION_ID]
    return element[2:]  # A8 and a one-byte length: the contents are at most 6 bytes


async def run(settings: Settings, **callbacks: Callable[..., None]) -> Report:
    """Run the suite; see :class:`Tester`."""
    return await Tester(settings, **callbacks).run()  # type: ignore[arg-type]


__all__ = ["DEFAULT_TESTER_TITLE", "Settings", "Tester", "run"]
