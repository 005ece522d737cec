"""Runs the conformance suite against a C12.22 endpoint over the network.

The tester is one C12.22 node (one :class:`~c1222.transport.endpoint.Endpoint`, so one pcap
holds the whole run): it optionally listens as a registrar (``listen``) and waits for the
target's Register, then, for each transport and security mode asked for, connects to the
target and runs every case of :data:`~c1222.headend.conformance.cases.CASES` in order. Each
request is built by a :class:`~c1222.session.requester.Requester`; each response is checked
against the protocol rules before the case sees it.
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
from c1222.codec.native import decode_native_address, native_address_text
from c1222.codec.redact import redact, redact_bytes
from c1222.codec.services import (
    RegisterRequest,
    RegisterResponse,
    Request,
    SecurityRequest,
    TerminateRequest,
)
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
from c1222.headend.conformance.rules import check_response
from c1222.headend.registry import RegistrarServices
from c1222.session.requester import Requester
from c1222.session.responder import Reply, Responder, ResponderConfig
from c1222.transport.client import responses
from c1222.transport.endpoint import Address, Endpoint, Link, PcapTracer

log = logging.getLogger("c1222.conformance")

DEFAULT_TESTER_TITLE = "2.16.124.113620.1.22.0.123.4"
#: Requests the tester answers while it listens; a chatty target cannot grow the record.
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

    def validate(self) -> Settings:
        if self.target is None and self.listen is None:
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
        if self.cases.oversize < 1:
            raise ConfigurationError("--oversize must be positive")
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
        self.endpoint = Endpoint(self._on_request, tracer=self.tracer,
                                 on_link_closed=lambda link: self.responder.close(link.id))
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
        self._arrived: asyncio.Event | None = None
        self.links: dict[tuple[int, str], Link] = {}
        self.target: Address | None = settings.target
        self.contact = False  # the target has answered something
        self.listening: Address | None = None

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
            elif s.wanted(REGISTER):
                self._emit(report, CaseResult(
                    REGISTER.id, REGISTER.service, None, None, Verdict.NOT_TESTED,
                    "needs --listen: the target registers with the tester"))
            if self.target is None:
                self.target = self._registered_address(report)
            if self.target is not None:
                report.target = f"{self.target[0]}:{self.target[1]}"
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
        state = RunState(mode=mode, transport=transport, called=self.called)
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
        if reply.data is not None and len(self.arrivals) < MAX_ARRIVALS:
            self.arrivals.append((link, data, reply))
            if self.registration is None and _is_registration(reply):
                self.registration = (link, data, reply)
            assert self._arrived is not None
            self._arrived.set()
        return reply.data, reply.close

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
            listen = self.listening or ("?", 0)
            return failed(None, f"no Register within {wait:g} s (point the target at "
                                f"{listen[0]}:{listen[1]} as its registrar)")
        link, _, reply = self.registration
        assert reply.request is not None
        request = next(s for s in reply.request.epsem.services
                       if isinstance(s, RegisterRequest))
        problems = _register_problems(request, reply, self.called)
        if problems:
            return failed(None, "; ".join(problems))
        if self.called is None and request.ap_title.arcs:
            self.called = request.ap_title
        return passed(None, f"node type {request.node_type:#04x}, serial "
                            f"{request.serial_number}, native address "
                            f"{native_address_text(request.native_address)}, period "
                            f"{request.registration_period} s; over {link.transport} in "
                            f"security mode {reply.request.epsem.security_mode}")

    def _registered_address(self, report: Report) -> Address | None:
        if self.registration is None:
            report.error = ("the target did not register and no HOST:PORT was given: "
                            "nothing to test")
            return None
        link, _, reply = self.registration
        assert reply.request is not None
        request = next(s for s in reply.request.epsem.services
                       if isinstance(s, RegisterRequest))
        try:  # binary or ASCII host:port (codec.native), an IP literal
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
        with_credentials = auth and cases.credentials
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


def _is_registration(reply: Reply) -> bool:
    if reply.request is None or reply.response is None:
        return False
    asked = any(isinstance(s, RegisterRequest) for s in reply.request.epsem.services)
    granted = any(isinstance(s, RegisterResponse) for s in reply.response.epsem.services)
    return asked and granted


def _register_problems(request: RegisterRequest, reply: Reply, called: Uid | None
                       ) -> list[str]:
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
    if calling is not None and request.ap_title.arcs and \
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
