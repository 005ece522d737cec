"""The meter registers with its head-end (digest 7.2) and stays registered.

On start: connect to the head-end, send Register (node type end device, device class, AP title,
serial number, native address, registration period), and keep the connection open so the
head-end can read the meter over it. Re-register before the period the head-end granted runs
out (a 5-minute margin as ITR does, or a fifth of short periods), when the connection drops, and
after a Deregister. While the head-end is unreachable, retry with exponential back-off
(1 s doubling to 60 s, with jitter so a fleet does not retry in step).

Trouble is said at the default log level, not only with ``-v``: the first failure is a WARNING
naming the cause (the head-end unreachable, or refusing our security: keys or mode that do not
match), the same trouble again at most every WARN_EVERY seconds (each retry in between is
INFO), and a WARNING when registration succeeds again.

Through a relay (``relay`` in the config; docs/network.md): the same, sent to the relay with the
master relay's title as the called title once it is known (absent before: the relay forwards it
upstream); the native address is binary; an empty title (``request_title``) asks the master
relay for one, which the meter then takes (:meth:`Meter.retitle`); the Register response's
calling title is the master relay's; reg-delay is followed (a random wait up to it before
registering again after a start or a lost association), and reg-period as with the head-end.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from c1222.codec.ber import Uid
from c1222.codec.native import encode_native_address
from c1222.codec.services import RegisterRequest, RegisterResponse
from c1222.codes import NodeType, ResponseCode
from c1222.crypto.nonces import TimeIvSource
from c1222.errors import ERR, SERVICE_ERRORS, C1222Error, SecurityError, ServiceError
from c1222.session.requester import Requester
from c1222.transport.client import Client, responses
from c1222.transport.endpoint import Address

if TYPE_CHECKING:
    from c1222.meter.node import Meter

log = logging.getLogger("c1222.meter.registration")

#: connection-type bits (digest 7.2): connectionless and connection mode, both accepted.
CONNECTION_TYPE = 0xF0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
RESPONSE_TIMEOUT = 10.0
#: Seconds between two warnings about the same lasting trouble (the first is logged at once).
WARN_EVERY = 300.0


def serial_number_uid(serial: str) -> Uid:
    """The serial number as a UID: one relative arc for a numeric serial, else one arc per
    byte (digest 7.2 carries the ESN as a UID without saying how it is formed)."""
    if serial.isdigit():
        return Uid.parse(f".{int(serial)}")
    return Uid.parse("." + ".".join(str(b) for b in serial.encode("latin-1")))


class Registration:
    """Keeps one meter registered. ``registered`` is set while a registration is in force."""

    def __init__(self, meter: Meter, listening: Address) -> None:
        self.meter = meter
        self.listening = listening
        config = meter.config
        self.headend_title = Uid.parse(config.headend_ap_title)
        self.via_relay = config.relay is not None
        #: The master relay's title, from its Register response (None until then).
        self.master_title: Uid | None = (Uid.parse(config.master_ap_title)
                                         if config.master_ap_title else None)
        self.requester = Requester(meter.ap_title, TimeIvSource(meter.wall), keys=config.keys,
                                   security_mode=config.security_mode, key_id=config.key_id)
        self.client = Client(self.requester, meter.endpoint, clock=meter.wall)
        self.registered = asyncio.Event()
        self.response: RegisterResponse | None = None
        self.rng = random.Random()

    def request(self) -> RegisterRequest:
        cfg = self.meter.config
        host, port = self.listening
        return RegisterRequest(
            node_type=NodeType.END_DEVICE, connection_type=CONNECTION_TYPE,
            device_class=self.meter.services.device_class,
            ap_title=self.meter.ap_title,
            serial_number=serial_number_uid(cfg.serial_number),
            # Native address in binary (codec.native, [U]), to a head-end and through a relay
            # alike; the head-end or relay reaches the meter there when no connection is open.
            native_address=encode_native_address(host, port),
            registration_period=cfg.registration_period)

    async def register_once(self) -> RegisterResponse:
        cfg = self.meter.config
        host, port = cfg.relay or cfg.headend  # type: ignore[misc]
        link = self.client.link
        if link is None or link.closed:
            link = await self.client.connect(host, port, cfg.headend_transport)
        called = self.master_title if self.via_relay else self.headend_title
        apdu = await self.client.call([self.request()], called=called,
                                      timeout=RESPONSE_TIMEOUT)
        found = responses(apdu)
        if not found or not isinstance(found[0], RegisterResponse):
            code = found[0].response_code if found else ResponseCode.ERR
            error = SERVICE_ERRORS.get(code, ERR)
            raise error(f"registration refused: {error.code.name} ({error.__doc__})")
        response = found[0]
        if self.via_relay:
            if apdu.calling_ap_title is not None:
                self.master_title = apdu.calling_ap_title
            if response.reg_ap_title.arcs:
                self.meter.retitle(response.reg_ap_title)
            if response.reg_delay != self.meter.reg_delay:
                self.meter.reg_delay = response.reg_delay
                self.meter._changed()
        return response

    async def _delay(self) -> None:
        """Through a relay: wait a random time up to the master's reg-delay before
        registering again (a fleet restarted together does not register at once)."""
        delay = self.meter.reg_delay if self.via_relay else 0
        if delay > 0:
            await asyncio.sleep(self.rng.uniform(0, delay) / self.meter.config.speed)

    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        assert self.meter.deregistered is not None
        trouble = Trouble(log, WARN_EVERY)
        await self._delay()
        while True:
            # Cleared before the Register goes out, not after its answer: a Deregister that
            # arrives between the answer and _hold must still end this registration.
            self.meter.deregistered.clear()
            try:
                self.response = await self.register_once()
            except (C1222Error, OSError) as exc:
                self.registered.clear()
                wait = backoff * (0.5 + self.rng.random())
                kind, message = self.explain(exc)
                trouble.failed(kind, f"{message}; retrying in {wait:.1f} s")
                await asyncio.sleep(wait)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_FIRST
            self.registered.set()
            trouble.ended(f"registered with the {self._peer()} at {self._where()}"
                          + (f" as {self.meter.ap_title}" if self.via_relay else ""))
            await self._hold(self.response.reg_period)
            self.registered.clear()
            link = self.client.link
            if link is None or link.closed:
                await self._delay()

    def _where(self) -> str:
        host, port = self.meter.config.relay or self.meter.config.headend  # type: ignore[misc]
        return f"{host}:{port}"

    def _peer(self) -> str:
        return "relay" if self.via_relay else "head-end"

    def explain(self, exc: BaseException) -> tuple[str, str]:
        """(kind, message) of a failed registration: the kind groups repeats of one trouble."""
        where = self._where()
        cfg = self.meter.config
        peer = "relay" if getattr(self, "via_relay", False) else "head-end"
        ours = (f"our security mode {cfg.security_mode}"
                + (f", key id {cfg.key_id}" if cfg.key_id is not None else ""))
        if isinstance(exc, SecurityError) or (isinstance(exc, ServiceError)
                                              and exc.code == ResponseCode.SME):
            how = ("its response failed our security check" if isinstance(exc, SecurityError)
                   else "it answered SME (security mechanism error)")
            return "security", (f"the {peer} at {where} does not accept our security: "
                                f"{how}; "
                                f"check that its keys and security mode match ours ({ours})")
        if isinstance(exc, ServiceError):
            return f"refused {exc.code.name}", f"the {peer} at {where} refused: {exc}"
        text = str(exc) or type(exc).__name__
        # a transport error names the address already
        return "unreachable", (f"cannot reach the {peer}: {text}" if where in text
                               else f"cannot reach the {peer} at {where}: {text}")

    async def _hold(self, period: int) -> None:
        """Wait until re-registration is due: the period (minus its margin) runs out, the
        connection closes, or the head-end deregisters us."""
        deregistered = self.meter.deregistered
        assert deregistered is not None
        speed = self.meter.config.speed
        due = None
        if period > 0:
            margin = 300 if period > 1500 else period / 5
            due = (period - margin) / speed  # the period runs on the meter's simulated clock
        loop = asyncio.get_running_loop()
        deadline = None if due is None else loop.time() + due
        while True:
            link = self.client.link
            if link is None or link.closed or deregistered.is_set():
                return
            if deadline is not None and loop.time() >= deadline:
                return
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.client.close()


class Trouble:
    """Logs one lasting trouble without flooding: a WARNING the first time, again at most every
    ``every`` seconds while the same kind lasts (INFO between), a WARNING when it ends."""

    def __init__(self, logger: logging.Logger, every: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = logger
        self.every = every
        self.clock = clock
        self.kind: str | None = None
        self.failures = 0
        self._warned_at: float | None = None

    def failed(self, kind: str, message: str) -> None:
        now = self.clock()
        self.failures += 1
        if (kind != self.kind or self._warned_at is None
                or now - self._warned_at >= self.every):
            repeat = (f" ({self.failures} failed attempts so far)"
                      if kind == self.kind and self.failures > 1 else "")
            self.log.warning("%s%s", message, repeat)
            self._warned_at = now
            self.kind = kind
        else:
            self.log.info("%s", message)

    def ended(self, message: str) -> None:
        if self.failures:
            self.log.warning("%s, after %d failed attempts", message, self.failures)
        else:
            self.log.info("%s", message)
        self.kind, self.failures, self._warned_at = None, 0, None
