"""C12.22 over TCP and UDP (digest 6.1, 6.2): a thin asyncio adapter around the pure layers.

An :class:`Endpoint` is one node's network presence. It listens on TCP and UDP on the same port,
connects out, and carries APDUs both ways on every association (a :class:`Link`): a meter that
opened a connection to register can be read over that same connection. Each arriving APDU is
either a response (it has A4, digest 2.6) handed to the request waiting for it, or a request
handed to ``on_request``, whose reply goes back on the same link. A TCP link is an
:class:`asyncio.Protocol` (no task and no time-out per read): a plain-function ``on_request``
(the meter's) is answered in the read that brought the request, and the answers of one read
leave in one write; a coroutine ``on_request`` is awaited in a task while the link is not read,
so a link's requests are always answered in order.

Hostile peers are bounded here, before any protocol work:

* at most ``max_per_address`` accepted TCP connections from one IP address (the next is
  closed at once), and at most ``max_connections`` in all: when every slot is taken, the
  accepted connection idle the longest is closed to make room — never one in the middle of
  an APDU or waiting for a response to our request (if all are, the newcomer is closed), so
  quiet peers holding every slot cannot shut out a meter that comes to register;
* an APDU whose length field exceeds ``max_frame`` closes the connection before anything is
  buffered (``StreamFramer``);
* a started APDU must complete within ``message_timeout`` seconds (a byte-a-second drip is
  cut off), and a connection idle for ``idle_timeout`` seconds is closed;
* a peer that does not read its answers is not read either (``_Stream.pause_writing``);
* UDP requests wait in a bounded queue; a flood beyond it is dropped, not buffered;
* nothing a peer sends raises out of the endpoint: a broken link is closed, the others go on.

Application-layer segmentation (codec.segments, c1222-network.md): every link has a
``max_apdu_size`` (the largest APDU sent on it unsegmented; None: never segment), so
:meth:`Link.send` cuts a larger APDU into segments; arriving segments are reassembled before
dispatch, within :class:`EndpointLimits`' reassembly bounds, so waiters, ``on_request`` (and a
relay) only ever see whole APDUs. A segment that cannot be reassembled (SGERR, RQTL, SGNP) is
handed to ``on_segment_error(segment, link, code)``, whose returned bytes (the node's
refusal, e.g. ``Responder.refuse``) are sent back.

``tracer`` (a :class:`PcapTracer`) records every APDU that crosses the wire, for tshark:
segments as sent and received, never the reassembled APDU.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from c1222 import limits
from c1222.codec.acse import SegmentHeader, called_invocation_id, segment_header
from c1222.codec.framing import StreamFramer, apdu_size
from c1222.codec.segments import Reassembler, ReassemblyLimits, segment
from c1222.codes import C1222_PORT, ResponseCode
from c1222.errors import (
    SGERR,
    ConfigurationError,
    DecodeError,
    LocalProtocolError,
    ResponseTimeout,
    ServiceError,
    TransportError,
)
from c1222.transport.pcap import PcapWriter

log = logging.getLogger("c1222.transport")

Address = tuple[str, int]


@dataclass(frozen=True)
class EndpointLimits:
    """Caps on what peers may cost this node."""

    max_connections: int = 256
    max_per_address: int = 64  # accepted TCP connections from one IP address
    max_frame: int = 64 * 1024  # larger APDUs close the link (RQTL is answered up to this size)
    message_timeout: float = 30.0
    idle_timeout: float = 300.0
    udp_queue: int = 1024
    udp_links: int = 4096
    #: Largest APDU a new link sends unsegmented (``Link.max_apdu_size``); None: never segment.
    segment_size: int | None = None
    #: Reassembly (codec.segments): the largest reassembled APDU (RQTL beyond), messages being
    #: reassembled at once in all and per association, bytes held, seconds to complete one.
    max_apdu_size: int = limits.DEFAULT_MAX_APDU_SIZE
    reassembly_pending: int = 64
    reassembly_per_association: int = 4
    reassembly_buffer: int = 4 * 1024 * 1024
    reassembly_timeout: float = 60.0

    def reassembly(self) -> ReassemblyLimits:
        return ReassemblyLimits(max_size=self.max_apdu_size, max_pending=self.reassembly_pending,
                                max_per_association=self.reassembly_per_association,
                                max_buffered=self.reassembly_buffer,
                                timeout=self.reassembly_timeout)


class PcapTracer:
    """Writes every APDU an endpoint sends or receives to a pcap file (flushed per frame)."""

    def __init__(self, path: str) -> None:
        self._writer = PcapWriter.open(path, flush=True, append=True)
        self._connections: dict[int, object] = {}

    def opened(self, link: Link) -> None:
        if link.transport == "tcp":
            client, server = ((link.peer, link.local) if link.accepted
                              else (link.local, link.peer))
            self._connections[id(link)] = self._writer.tcp_connection(
                client, server, time=time.time())

    def apdu(self, link: Link, data: bytes, *, sent: bool) -> None:
        src, dst = (link.local, link.peer) if sent else (link.peer, link.local)
        if link.transport == "udp":
            self._writer.udp(src, dst, data, time=time.time())
            return
        conn = self._connections.get(id(link))
        if conn is not None:
            from_client = sent != link.accepted
            conn.send(data, from_client=from_client, time=time.time())  # type: ignore[attr-defined]

    def closed(self, link: Link) -> None:
        conn = self._connections.pop(id(link), None)
        if conn is not None:
            conn.close(time=time.time())  # type: ignore[attr-defined]

    def close(self) -> None:
        for link_id in list(self._connections):
            self._connections.pop(link_id).close(time=time.time())  # type: ignore[attr-defined]
        self._writer.close()


class Link:
    """One association: a TCP connection, or a UDP peer address on the shared socket."""

    _ids = itertools.count(1)

    def __init__(self, endpoint: Endpoint, transport: str, peer: Address, local: Address,
                 *, accepted: bool) -> None:
        self.endpoint = endpoint
        self.transport = transport
        self.peer = peer
        self.local = local
        self.accepted = accepted
        self.id = next(self._ids)
        self.closed = False
        self.last_active = time.monotonic()
        self.receiving = False  # TCP: part of an APDU is buffered (never evicted then)
        #: Largest APDU sent on this link unsegmented (None: never segment); a relay may set
        #: it per link (c1222-network.md).
        self.max_apdu_size: int | None = endpoint.limits.segment_size
        self._stream: _Stream | None = None
        self._datagram: asyncio.DatagramTransport | None = None

    def __repr__(self) -> str:
        return f"<Link {self.transport} {self.peer[0]}:{self.peer[1]} #{self.id}>"

    @property
    def name(self) -> str:
        """The peer as ``host:port`` (the native address a node registers with)."""
        return f"{self.peer[0]}:{self.peer[1]}"

    def _parts(self, data: bytes) -> list[bytes]:
        """``data`` as the APDUs that go on the wire (segments beyond ``max_apdu_size``),
        traced; TransportError when the link is closed or the APDU cannot be segmented."""
        if self.closed:
            raise TransportError(f"{self.transport} link to {self.name} is closed")
        parts = [data]
        if self.max_apdu_size is not None and len(data) > self.max_apdu_size:
            try:
                parts = segment(data, self.max_apdu_size)
            except LocalProtocolError as exc:
                raise TransportError(f"cannot send to {self.name}: {exc}") from None
            self.endpoint.stats["segments_sent"] += len(parts)
        tracer = self.endpoint.tracer
        if tracer is not None:
            for part in parts:
                tracer.apdu(self, part, sent=True)
        self.last_active = time.monotonic()
        return parts

    def send_nowait(self, data: bytes) -> None:
        """Queue one whole APDU for sending (as :meth:`send`) without waiting for the peer to
        take it: what the endpoint answers requests with. A peer that does not read its
        answers stops being read (``_Stream.pause_writing``), so the queue stays bounded."""
        parts = self._parts(data)
        if self._datagram is not None:
            for part in parts:
                self._datagram.sendto(part, self.peer)
            return
        assert self._stream is not None
        self._stream.write(parts)

    async def send(self, data: bytes) -> None:
        """Send one whole APDU, as segments when it is larger than ``max_apdu_size``, and wait
        until the kernel took it (TCP flow control). TransportError when the link is closed or
        lost, or the APDU cannot be segmented."""
        self.send_nowait(data)
        if self._stream is not None:
            await self._stream.drain()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._stream is not None:
            self._stream.close()
        self.endpoint._link_closed(self)


#: Answers gathered in one pump are written together up to this many bytes at a time.
_BATCH = 64 * 1024
#: Loop iterations a lost connection's link stays open, so that the requests answered in its
#: last bytes complete first (``exchange`` resumes through wait_for and shield).
_CLOSE_AFTER_STEPS = 4


class _Stream(asyncio.Protocol):
    """One TCP connection's bytes: ``data_received`` -> framer -> the endpoint's dispatch ->
    ``transport.writelines`` at the end of the loop iteration, with no task and no time-out
    per read.

    One timer per connection enforces ``idle_timeout`` and ``message_timeout``: it is not
    re-armed on every read (that would cost a timer per request) but, when it fires, checks
    the time of the last bytes and the start of a message still incomplete and re-arms itself
    for whichever comes first. A request handler that must await (a coroutine) runs in a task
    while the connection is not read, so requests on one connection are served in order, as
    a peer that does not read its answers is not read either (``pause_writing``).
    """

    def __init__(self, endpoint: Endpoint, *, accepted: bool) -> None:
        self.endpoint = endpoint
        self.accepted = accepted
        self.link: Link | None = None
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(endpoint.limits.max_frame)
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0  # loop time of the last bytes received (or the end of a request)
        self._begun: float | None = None  # when the message now being received started
        #: APDUs received and not yet served: behind an awaited request, or answers the peer
        #: does not take (reading stops then, so this holds at most one read's APDUs)
        self._queue: collections.deque[bytes] = collections.deque()
        self._awaiting = False  # a coroutine handler's request is being served
        self._batch: list[bytes] | None = None  # answers collected within one pump
        self._batched = 0
        self._write_paused = False
        self._drainers: list[asyncio.Future[None]] = []

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        endpoint = self.endpoint
        peer = transport.get_extra_info("peername")[:2]
        if self.accepted and not endpoint._admit(peer):
            transport.close()
            return
        link = Link(endpoint, "tcp", peer, transport.get_extra_info("sockname")[:2],
                    accepted=self.accepted)
        link._stream = self
        self.link = link
        endpoint._tcp_links.add(link)
        if self.accepted:
            endpoint._per_address[peer[0]] = endpoint._per_address.get(peer[0], 0) + 1
        if endpoint.tracer is not None:
            # now: a connecting caller sends its first APDU as soon as connect() returns
            endpoint.tracer.opened(link)
        self._last = self._loop.time()
        self._timer = self._loop.call_at(self._last + endpoint.limits.idle_timeout, self._tick)

    def data_received(self, data: bytes) -> None:
        link = self.link
        if link is None or link.closed:
            return
        now = self._loop.time()
        self._last = link.last_active = now
        framer = self.framer
        try:
            apdus = framer.feed(data)
        except DecodeError as exc:
            self.endpoint.stats["frames_refused"] += 1
            log.info("closing %r: %s", link, exc)
            link.close()
            return
        if framer.buffered:
            # A message begun must finish within message_timeout of its first byte, however
            # the bytes trickle in (drip defence); the next message's clock starts with its
            # own bytes.
            if self._begun is None or apdus:
                self._begun = now
                deadline = now + self.endpoint.limits.message_timeout
                if self._timer is not None and deadline < self._timer.when():
                    self._timer.cancel()
                    self._timer = self._loop.call_at(deadline, self._tick)
        else:
            self._begun = None
        if not apdus:
            link.receiving = framer.buffered > 0 or self._awaiting
            return
        link.receiving = True  # until its requests are answered, too
        self._queue.extend(apdus)
        if not self._awaiting:
            self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake_drainers()
        if self.link is not None and not self.link.closed:
            # A peer that answers and closes at once delivers both in one loop iteration: the
            # task waiting for that answer must run (and see its link open, as with a stream
            # reader) before the link is closed and on_link_closed is told.
            self.endpoint._spawn(self._close_soon(self.link))

    @staticmethod
    async def _close_soon(link: Link) -> None:
        try:
            for _ in range(_CLOSE_AFTER_STEPS):
                await asyncio.sleep(0)
        finally:
            link.close()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._reading(False)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainers()
        if not self._awaiting and self.link is not None and not self.link.closed:
            self._pump()
        self._reading(True)

    # -- serving ---------------------------------------------------------------------

    def _pump(self) -> None:
        """Serve the queued APDUs in order until none is left, a handler must be awaited, or
        the peer stops taking its answers (then ``resume_writing`` pumps again). The answers
        are written together (up to ``_BATCH`` bytes at a time) once every link with requests
        in this loop iteration was served (``Endpoint._flush_soon``)."""
        link = self.link
        assert link is not None
        queue = self._queue
        if self._batch is None:  # else answers of this loop iteration not yet written
            self._batch = []
            self._batched = 0
        try:
            while queue and not link.closed:
                if self._write_paused:
                    return
                pending = self.endpoint._handle(queue.popleft(), link)
                if pending is not None:
                    self._awaiting = True
                    self._reading(False)
                    self.endpoint._spawn(self._finish(pending))
                    return
                if self._batched >= _BATCH:
                    self._flush()
                    self._batch = []
        finally:
            self.endpoint._flush_soon(self)
        link.receiving = self.framer.buffered > 0

    async def _finish(self, pending: Awaitable[None]) -> None:
        """Await a request's handler, then serve what arrived meanwhile."""
        try:
            await pending
        finally:
            self._awaiting = False
            self._last = self._loop.time()
        link = self.link
        if link is not None and not link.closed:
            self._pump()
            self._reading(True)

    def _flush(self) -> None:
        self._batched = 0
        batch, self._batch = self._batch, None
        if batch and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(batch)

    def write(self, parts: list[bytes]) -> None:
        if self._batch is not None:
            self._batch.extend(parts)
            self._batched += sum(map(len, parts))
            return
        assert self.transport is not None
        if self.transport.is_closing():
            raise TransportError("the connection is closing")
        self.transport.writelines(parts)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drainers.append(waiter)
        await waiter
        if self.link is None or self.link.closed:
            raise TransportError("lost the connection")

    def _wake_drainers(self) -> None:
        drainers, self._drainers = self._drainers, []
        for waiter in drainers:
            if not waiter.done():
                waiter.set_result(None)

    def _reading(self, on: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if on and not self._write_paused and not self._awaiting:
            if not transport.is_reading():
                transport.resume_reading()
        elif not on and transport.is_reading():
            transport.pause_reading()

    # -- time-outs -------------------------------------------------------------------

    def _tick(self) -> None:
        """The connection's one timer: close it when a time-out passed, else re-arm."""
        self._timer = None
        link = self.link
        if link is None or link.closed:
            return
        limits_ = self.endpoint.limits
        now = self._loop.time()
        if self._awaiting:  # a request being served: its handler keeps its own time
            deadline = now + limits_.idle_timeout
        elif self._begun is not None and self.framer.buffered:
            deadline = self._begun + limits_.message_timeout
        else:
            deadline = self._last + limits_.idle_timeout
        if now >= deadline:
            self.endpoint.stats["timeouts"] += 1
            link.close()
            return
        self._timer = self._loop.call_at(deadline, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()
        if self.transport is not None:
            self.transport.close()  # what was written still goes out, then FIN
        self._wake_drainers()


#: (APDU, link) -> (the answer or None, close the link after it). A plain function answers at
#: once, in the read that brought the request (no task); a coroutine function is awaited in a
#: task of its link.
RequestHandler = Callable[[bytes, Link], Awaitable[tuple[bytes | None, bool]]
                          | tuple[bytes | None, bool]]
#: (the segment, its link, SGERR / RQTL / SGNP) -> the bytes to answer with, or None.
SegmentErrorHandler = Callable[[bytes, Link, ResponseCode], bytes | None]


class Endpoint:
    """A C12.22 node's TCP+UDP presence. Use ``async with`` or call :meth:`close`."""

    def __init__(self, on_request: RequestHandler | None = None, *,
                 limits_: EndpointLimits | None = None, tracer: PcapTracer | None = None,
                 on_link_closed: Callable[[Link], None] | None = None,
                 on_segment_error: SegmentErrorHandler | None = None) -> None:
        self.on_request = on_request
        self.limits = limits_ or EndpointLimits()
        self.on_segment_error = on_segment_error
        self.reassembler = Reassembler(self.limits.reassembly())
        self.tracer = tracer
        self.on_link_closed = on_link_closed
        self.address: Address | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._udp: asyncio.DatagramTransport | None = None
        # With a shared port (listen's reuse_port), requests this endpoint starts over UDP go
        # from a socket of its own: the kernel would hand the answers arriving on the shared
        # port to whichever process their flow hashes to, not to the one that asked.
        self._reuse_port = False
        self._udp_out: asyncio.DatagramTransport | None = None
        # UDP links by (peer, whether over _udp_out)
        self._udp_links: OrderedDict[tuple[Address, bool], Link] = OrderedDict()
        self._udp_queue: asyncio.Queue[tuple[bytes, Link]] | None = None
        self._tcp_links: set[Link] = set()
        self._per_address: dict[str, int] = {}  # accepted TCP connections per peer IP
        self._waiters: dict[tuple[int, int], asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._unflushed: list[_Stream] = []  # connections with answers to write
        self.stats = {"connections_refused": 0, "connections_evicted": 0, "frames_refused": 0,
                      "timeouts": 0, "udp_dropped": 0, "decode_errors": 0,
                      "segments_sent": 0, "segments_received": 0, "segment_errors": 0}

    def _flush_soon(self, stream: _Stream) -> None:
        """Write ``stream``'s answers once this loop iteration has served every connection
        that had requests (one callback per iteration): the peers' wake-ups then come
        together, not one per answer. A wake-up is the dearest part of a send when the peer
        waits idle for it (the reschedule interrupt; a fifth of the meter's CPU per request
        on loopback). As Redis writes its replies before the loop sleeps again."""
        if not self._unflushed:
            asyncio.get_running_loop().call_soon(self._flush_all)
        self._unflushed.append(stream)

    def _flush_all(self) -> None:
        streams, self._unflushed = self._unflushed, []
        for stream in streams:
            stream._flush()

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ listening

    async def listen(self, host: str = "127.0.0.1", port: int = C1222_PORT, *,
                     reuse_port: bool = False) -> Address:
        """Listen on TCP and UDP ``host:port`` (port 0: one free port for both).

        ``reuse_port``: SO_REUSEPORT on both, so that several processes share the port and
        the kernel spreads connections and datagram flows over them (head-end workers)."""
        for _ in range(20):
            server = await asyncio.get_running_loop().create_server(
                lambda: _Stream(self, accepted=True), host, port, reuse_address=True,
                reuse_port=reuse_port or None)
            bound = server.sockets[0].getsockname()[:2]
            try:
                await self._open_udp((host, bound[1]), reuse_port=reuse_port)
            except OSError:
                server.close()
                if port:
                    raise
                continue  # the kernel's TCP port is taken for UDP: pick another
            self._servers.append(server)
            self._reuse_port = reuse_port
            self.address = (bound[0], bound[1])
            return self.address
        raise ConfigurationError(f"no port free for both TCP and UDP on {host}")

    async def _open_udp(self, local: Address | None, remote: Address | None = None, *,
                        reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if local and ":" in local[0] else 0
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=local, remote_addr=remote, family=family,
            reuse_port=reuse_port or None)
        # The kernel's default receive buffer (~208 KiB) holds ~160 datagrams of a secured
        # request: a burst is dropped there long before udp_queue fills. Ask for room for the
        # queue (the kernel caps it at net.core.rmem_max).
        with contextlib.suppress(OSError):
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, self.limits.udp_queue * 2048)
        self._udp = transport
        self._udp_queue = asyncio.Queue(self.limits.udp_queue)
        self._spawn(self._serve_udp())

    def _admit(self, peer: Address) -> bool:
        """Whether an accepted TCP connection from ``peer`` gets a slot (counted if not)."""
        if (self._per_address.get(peer[0], 0) >= self.limits.max_per_address
                or (len(self._tcp_links) >= self.limits.max_connections
                    and not self._evict_idlest())):
            self.stats["connections_refused"] += 1
            return False
        return True

    def _evict_idlest(self) -> bool:
        """Close the accepted TCP connection idle the longest to free a slot; False when
        every one is busy (an APDU half received, or a response of ours awaited)."""
        waiting = {link_id for link_id, _ in self._waiters}
        idlest: Link | None = None
        for link in self._tcp_links:
            if (link.accepted and not link.closed and not link.receiving
                    and link.id not in waiting
                    and (idlest is None or link.last_active < idlest.last_active)):
                idlest = link
        if idlest is None:
            return False
        log.info("closing %r, idle %.0f s, to make room for a new connection", idlest,
                 time.monotonic() - idlest.last_active)
        self.stats["connections_evicted"] += 1
        idlest.close()
        return True

    # ------------------------------------------------------------------ connecting

    async def connect(self, host: str, port: int, transport: str = "tcp",
                      timeout: float = 10.0) -> Link:
        """A link to a node at ``host:port`` (TCP: a new connection; UDP: the shared socket)."""
        if transport == "udp":
            if self._udp is None:
                await self._open_udp(("::" if ":" in host else "0.0.0.0", 0))
            assert self._udp is not None
            if self._reuse_port and self._udp_out is None:
                self._udp_out, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: _Datagrams(self, out=True),
                    local_addr=("::" if ":" in host else "0.0.0.0", 0))
            info = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                               type=socket.SOCK_DGRAM)
            return self._udp_link(info[0][4][:2], out=self._reuse_port)
        try:
            _, stream = await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                lambda: _Stream(self, accepted=False), host, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise TransportError(f"cannot connect to {host}:{port}: {exc or 'time-out'}") \
                from None
        assert isinstance(stream, _Stream) and stream.link is not None
        if stream.link.closed:  # lost before connect() returned
            raise TransportError(f"lost the connection to {host}:{port}")
        return stream.link

    async def exchange(self, link: Link, data: bytes, invocation_id: int, *,
                       timeout: float = 30.0, retries: int = 2) -> bytes:
        """Send a request and wait for the response whose A4 is ``invocation_id``.

        On UDP the identical bytes are resent on a time-out (digest 6.2), ``retries`` times.
        Raises ResponseTimeout (a TransportError) on a time-out, TransportError on a lost link.
        """
        key = (link.id, invocation_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        attempts = 1 + (retries if link.transport == "udp" else 0)
        try:
            for attempt in range(attempts):
                await link.send(data)
                try:
                    return await asyncio.wait_for(asyncio.shield(future),
                                                  timeout / attempts)
                except asyncio.TimeoutError:
                    if attempt == attempts - 1:
                        raise ResponseTimeout(
                            f"no response from {link.name} within {timeout:g} s") from None
        finally:
            self._waiters.pop(key, None)
            # A send that found the link closed also failed the waiter (_link_closed), with
            # no one left to read it: read it here, or asyncio logs it as never retrieved.
            if future.done() and not future.cancelled():
                future.exception()
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ UDP

    def _udp_link(self, peer: Address, out: bool = False) -> Link:
        key = (peer, out)
        link = self._udp_links.get(key)
        if link is None:
            sock = self._udp_out if out else self._udp
            assert sock is not None
            local = sock.get_extra_info("sockname")[:2]
            link = Link(self, "udp", peer, local, accepted=not out)
            link._datagram = sock
            self._udp_links[key] = link
            while len(self._udp_links) > self.limits.udp_links:
                _, old = self._udp_links.popitem(last=False)
                old.close()
        self._udp_links.move_to_end(key)
        return link

    def _datagram(self, data: bytes, peer: Address, out: bool = False) -> None:
        try:
            if apdu_size(data, 0, self.limits.max_frame) != len(data):
                raise DecodeError("a datagram must hold exactly one APDU", 0, "apdu")
        except DecodeError:
            self.stats["frames_refused"] += 1
            return
        link = self._udp_link(peer[:2], out)
        assert self._udp_queue is not None
        try:
            self._udp_queue.put_nowait((data, link))
        except asyncio.QueueFull:
            self.stats["udp_dropped"] += 1

    async def _serve_udp(self) -> None:
        assert self._udp_queue is not None
        queue = self._udp_queue
        while True:
            data, link = await queue.get()
            await self._dispatch(data, link)

    # ------------------------------------------------------------------ both

    async def _dispatch(self, data: bytes, link: Link) -> None:
        pending = self._handle(data, link)
        if pending is not None:
            await pending

    def _handle(self, data: bytes, link: Link) -> Awaitable[None] | None:
        """Route one received APDU: reassemble a segment, hand a response to its waiter, serve
        a request. Answers at once when ``on_request`` is a plain function; otherwise returns
        what to await for the answer (the caller keeps the link's requests in order)."""
        if self.tracer is not None:
            self.tracer.apdu(link, data, sent=False)
        try:
            header = segment_header(data)
        except DecodeError:
            header = None  # not even a header: on_request refuses it as it does today
        if header is not None:
            whole = self._reassemble(data, header, link)
            if whole is None:
                return None
            data = whole
        try:
            a4 = called_invocation_id(data)
        except DecodeError:
            self.stats["decode_errors"] += 1
            a4 = None
        if a4 is not None:
            future = self._waiters.get((link.id, a4))
            if future is not None and not future.done():
                future.set_result(data)
                return None
        if self.on_request is None:
            return None
        try:
            result = self.on_request(data, link)
        except Exception:  # the node's bug must not take the link down with it
            log.exception("request handler failed on %r", link)
            return None
        if isinstance(result, tuple):
            self._answer(link, *result)
            return None
        return self._answer_later(result, link)

    def _answer(self, link: Link, reply: bytes | None, close: bool) -> None:
        if reply is not None and not link.closed:
            with contextlib.suppress(TransportError):
                link.send_nowait(reply)
        if close and link.transport == "tcp":
            link.close()

    async def _answer_later(self, pending: Awaitable[tuple[bytes | None, bool]],
                            link: Link) -> None:
        try:
            reply, close = await pending
        except Exception:  # the node's bug must not take the link down with it
            log.exception("request handler failed on %r", link)
            return
        if reply is not None and not link.closed:
            with contextlib.suppress(TransportError):
                await link.send(reply)
        if close and link.transport == "tcp":
            link.close()

    def _reassemble(self, data: bytes, header: SegmentHeader, link: Link) -> bytes | None:
        """The whole APDU when ``data`` completes one, else None (an error answered)."""
        self.stats["segments_received"] += 1
        try:
            whole = self.reassembler.feed(header, link.id, time.monotonic())
            if whole is not None and segment_header(whole) is not None:
                raise SGERR("a reassembled APDU is itself a segment")
            return whole
        except (ServiceError, DecodeError) as exc:
            self.stats["segment_errors"] += 1
            code = exc.code if isinstance(exc, ServiceError) else ResponseCode.SGERR
            log.info("segment from %r refused (%s): %s", link, code.name, exc)
            if self.on_segment_error is None:
                return None
            try:
                reply = self.on_segment_error(data, link, code)
            except Exception:  # the node's bug must not take the link down with it
                log.exception("segment error handler failed on %r", link)
                return None
            self._answer(link, reply, False)
            return None

    def _link_closed(self, link: Link) -> None:
        if link in self._tcp_links and link.accepted:
            host = link.peer[0]
            left = self._per_address.get(host, 0) - 1
            if left > 0:
                self._per_address[host] = left
            else:
                self._per_address.pop(host, None)
        self._tcp_links.discard(link)
        self.reassembler.drop(link.id)
        if self.tracer is not None and link.transport == "tcp":
            self.tracer.closed(link)
        for (link_id, _), future in list(self._waiters.items()):
            if link_id == link.id and not future.done():
                future.set_exception(TransportError(f"link to {link.name} closed"))
        if self.on_link_closed is not None:
            self.on_link_closed(link)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def find_link(self, link_id: int) -> Link | None:
        """The open link with this id (a responder's ``peer``), if it is still open."""
        for link in itertools.chain(self._tcp_links, self._udp_links.values()):
            if link.id == link_id and not link.closed:
                return link
        return None

    @property
    def connections(self) -> int:
        return len(self._tcp_links)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for link in list(self._tcp_links):
            link.close()
        if self._udp is not None:
            self._udp.close()
        if self._udp_out is not None:
            self._udp_out.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, endpoint: Endpoint, out: bool = False) -> None:
        self.endpoint = endpoint
        self.out = out  # the socket of requests this endpoint starts (shared port)

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.endpoint._datagram(data, addr, self.out)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        log.debug("UDP error: %s", exc)


def parse_address(text: str, default_port: int = C1222_PORT) -> Address:
    """``HOST:PORT``, ``[v6]:PORT``, ``HOST`` or ``:PORT`` as (host, port);
    ConfigurationError naming the text otherwise."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigurationError(f"bad address {text!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ConfigurationError(f"bad address {text!r}")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text)
    host = host or "127.0.0.1"
    return host, port


def _port(text: str, whole: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigurationError(f"bad port in address {whole!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"port out of range in address {whole!r}")
    return port
