"""Capture files in and out: C12.22 APDUs from pcap/pcapng, and pcap files of APDUs (digest 6, 11).

Reading (:func:`read_capture`) takes a pcap or pcapng file, follows every TCP
connection and UDP flow on port 1153 (by default), reassembles each TCP
direction and splits it into APDUs with :class:`c1222.codec.framing.StreamFramer`.
With ``heuristic=True`` it also follows traffic on other ports, as Wireshark's
heuristic dissectors do: a TCP conversation counts as C12.22 when the first bytes of
a direction have the ACSE structure of an APDU (:func:`c1222.codec.acse.looks_like_apdu`),
a UDP one once a datagram has it; other traffic is skipped silently.
It yields one :class:`CapturedApdu` per APDU, numbered by the frame in which the
APDU completes, as Wireshark numbers frames. Bytes that cannot be framed give a
record whose ``error`` is set; that direction is then skipped, the others go on.

Writing (:class:`PcapWriter`) produces a classic Ethernet pcap with a
consistent TCP handshake, sequence and acknowledgement numbers, so tshark
dissects every APDU without flagging retransmissions.

The container formats are read and written by ``dpkt``. The common link,
IP and TCP/UDP headers are parsed with plain byte indexing: building dpkt
objects per frame costs several times more than the rest of the reader.
"""

from __future__ import annotations

import heapq
import io
import os
import socket
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import IO, BinaryIO, Final

import dpkt

from c1222 import limits
from c1222.codec import acse
from c1222.codec.framing import StreamFramer, apdu_size
from c1222.errors import (
    ConfigurationError,
    DecodeError,
    DecodeLimitExceeded,
    Truncated,
)

__all__ = [
    "C1222_PORT",
    "CapturedApdu",
    "MAX_PENDING_BYTES",
    "MAX_PENDING_SEGMENTS",
    "PcapWriter",
    "TcpConnection",
    "read_capture",
]

#: The registered port of C12.22 over TCP and UDP (digest 6.1).
C1222_PORT: Final = 1153
#: Out-of-order bytes held per TCP direction before the stream is given up.
MAX_PENDING_BYTES: Final = 16 * 1024 * 1024
#: Out-of-order segments held per TCP direction (many tiny segments cost more than their bytes).
MAX_PENDING_SEGMENTS: Final = 65536
#: Heuristic reading: a stream off the C12.22 ports is judged on at most its first GUESS_BYTES
#: (C12.22's header elements take far fewer), holding at most GUESS_PENDING_BYTES out of order
#: meanwhile; the verdicts of at most MAX_VERDICTS conversations are kept (oldest forgotten).
GUESS_BYTES: Final = 512
GUESS_PENDING_BYTES: Final = 256 * 1024
MAX_VERDICTS: Final = 65536

_MASK32: Final = 0xFFFFFFFF
_HALF32: Final = 0x80000000
_TCP_FIN, _TCP_SYN, _TCP_RST, _TCP_PSH, _TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_ETH_VLAN: Final = frozenset((0x8100, 0x88A8, 0x9100))
# BSD loopback address families for IPv6 differ by OS (Linux, NetBSD/OpenBSD, FreeBSD, macOS).
_AF_INET6_VALUES: Final = frozenset((10, 24, 28, 30))
# IPv6 extension headers that may precede TCP/UDP: hop-by-hop, routing, destination, AH, fragment.
_IPV6_EXT: Final = frozenset((0, 43, 60, 51, 44))

_LINK_ETHERNET: Final = 1
_LINK_NULL: Final = 0
_LINK_LOOP: Final = 108
_LINK_SLL: Final = 113
_LINK_SLL2: Final = 276
_LINK_RAW: Final = frozenset((101, 12, 14))
_LINK_RAW4: Final = 228
_LINK_RAW6: Final = 229
SUPPORTED_LINK_TYPES: Final = frozenset(
    {_LINK_ETHERNET, _LINK_NULL, _LINK_LOOP, _LINK_SLL, _LINK_SLL2, _LINK_RAW4, _LINK_RAW6}
    | _LINK_RAW
)

_PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"


@dataclass(frozen=True, slots=True)
class CapturedApdu:
    """One C12.22 APDU found in a capture, or one place where the bytes could not be framed.

    ``frame`` is the 1-based number of the frame in which the APDU completes;
    ``src``/``dst`` are ``"ip:port"`` (``"[addr]:port"`` for IPv6). When
    ``error`` is set, ``data`` holds the transport payload of that frame (or
    nothing) rather than an APDU. ``error`` takes no part in equality: exceptions
    compare by identity, and two reads of one file should give equal records.
    """

    frame: int
    time: float
    src: str
    dst: str
    transport: str
    data: bytes
    error: DecodeError | None = field(default=None, compare=False)

    def __init__(self, frame: int, time: float, src: str, dst: str, transport: str,
                 data: bytes, error: DecodeError | None = None) -> None:
        # written out: compiled by mypyc, native stores (codec.acse.Apdu says why)
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "dst", dst)
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "error", error)

    @property
    def ok(self) -> bool:
        """True for an APDU, False for an error record."""
        return self.error is None


# --------------------------------------------------------------------------- reading


def read_capture(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    ports: Iterable[int] | None = (C1222_PORT,),
    heuristic: bool = False,
    max_pending: int = MAX_PENDING_BYTES,
    max_apdu_size: int = limits.MAX_APDU_SIZE,
) -> Iterator[CapturedApdu]:
    """Yield every C12.22 APDU of a pcap or pcapng capture, in the order the APDUs complete.

    ``source`` is a path or a binary file object (read from its current
    position). TCP/UDP traffic with one of ``ports`` on either side is C12.22
    (as tshark's ``-d``); ``ports=None`` makes all of it C12.22. With
    ``heuristic``, traffic on other ports is followed too, but a conversation
    counts only once its first bytes (TCP) or a datagram (UDP) have the ACSE
    structure (:func:`c1222.codec.acse.looks_like_apdu`): until then nothing of it is reported,
    errors included. Problems with the
    traffic are reported as records with ``error`` set; a capture file that is
    not pcap or pcapng, or that ends inside a record, raises :class:`DecodeError`
    (:class:`Truncated` for the latter) after the APDUs before it.
    """
    port_set = None if ports is None else frozenset(ports)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fileobj:
            yield from _read(fileobj, port_set, heuristic, max_pending, max_apdu_size)
    else:
        yield from _read(source, port_set, heuristic, max_pending, max_apdu_size)


class _Prefixed:
    """A read-only file that first returns bytes already consumed (for unseekable sources)."""

    def __init__(self, prefix: bytes, fileobj: IO[bytes]) -> None:
        self._prefix = prefix
        self._f = fileobj
        self.name = getattr(fileobj, "name", "<stream>")

    def read(self, size: int = -1) -> bytes:
        if not self._prefix:
            return self._f.read(size)
        head = self._prefix
        if 0 <= size < len(head):
            self._prefix = head[size:]
            return head[:size]
        self._prefix = b""
        rest = self._f.read(-1 if size < 0 else size - len(head))
        return head + rest


def _open_container(fileobj: IO[bytes]) -> tuple[int, Iterator[tuple[float, bytes]]]:
    """The link type and the (time, frame bytes) records of a pcap or pcapng file."""
    seekable = False
    try:
        seekable = fileobj.seekable()
        start = fileobj.tell() if seekable else 0
    except (AttributeError, OSError):
        seekable = False
    magic = fileobj.read(4)
    if len(magic) < 4:
        raise Truncated("capture file shorter than its magic number", 0, "capture")
    if seekable:
        fileobj.seek(start)
        source: IO[bytes] | _Prefixed = fileobj
    else:
        source = _Prefixed(magic, fileobj)
    try:
        if magic == _PCAPNG_MAGIC:
            reader: dpkt.pcap.Reader | dpkt.pcapng.Reader = dpkt.pcapng.Reader(source)
        else:
            reader = dpkt.pcap.Reader(source)
    except (dpkt.Error, ValueError, struct.error) as exc:
        raise DecodeError(f"not a pcap or pcapng file ({exc})", 0, "capture") from None
    layout = _PCAP_LAYOUTS.get(magic)
    if layout is not None:  # dpkt read and checked the file header; the records are ours
        return reader.datalink(), _pcap_records(source, *layout)
    return reader.datalink(), iter(reader)


#: Classic pcap magic (as the file's first bytes) -> (record header layout, nanoseconds).
_PCAP_LAYOUTS: Final = {
    b"\xd4\xc3\xb2\xa1": (struct.Struct("<IIII"), False),
    b"\xa1\xb2\xc3\xd4": (struct.Struct(">IIII"), False),
    b"\x4d\x3c\xb2\xa1": (struct.Struct("<IIII"), True),
    b"\xa1\xb2\x3c\x4d": (struct.Struct(">IIII"), True),
}
#: Bytes read from the file at a time by the classic pcap reader.
_READ_BLOCK: Final = 1 << 20
#: No link-layer frame is larger (libpcap's largest snapshot length is 256 KiB): a record
#: claiming more is a damaged file, refused before its bytes are buffered.
MAX_RECORD: Final = 1 << 22


def _pcap_records(fileobj: IO[bytes] | _Prefixed, header: struct.Struct, nano: bool
                  ) -> Iterator[tuple[float, bytes]]:
    """The (time, frame) records of a classic pcap file after its 24-byte header.

    dpkt builds a header object and makes two reads per record; this reads 1 MiB blocks and
    slices them (a third of the reader's time on a 100,000-message capture). The times are
    dpkt's to the bit: seconds + microseconds / 1e6, or the nanosecond value correctly rounded.
    """
    unpack = header.unpack_from
    buf = b""
    pos = 0
    base = 24  # file offset of buf[0], for the errors
    while True:
        if len(buf) - pos < 16:
            more = fileobj.read(_READ_BLOCK)
            base += pos
            buf, pos = buf[pos:] + more, 0
            if len(buf) < 16:
                if more:
                    continue  # a short read from a pipe: read on
                if buf:
                    raise Truncated("capture file ends inside a record header", base, "capture")
                return
        sec, frac, caplen, _ = unpack(buf, pos)
        if caplen > MAX_RECORD:
            raise Truncated(f"capture record of {caplen} bytes: the file is damaged", base + pos,
                            "capture")
        stop = pos + 16 + caplen
        while stop > len(buf):
            more = fileobj.read(max(_READ_BLOCK, stop - len(buf)))
            if not more:
                # as dpkt: a record cut short by the end of the file is what is there
                yield ((sec * 1_000_000_000 + frac) / 1_000_000_000 if nano
                       else sec + frac / 1e6), buf[pos + 16 :]
                return
            base += pos
            buf, stop, pos = buf[pos:] + more, stop - pos, 0
        yield ((sec * 1_000_000_000 + frac) / 1_000_000_000 if nano
               else sec + frac / 1e6), buf[pos + 16 : stop]
        pos = stop


def _records(records: Iterator[tuple[float, bytes]]) -> Iterator[tuple[float, bytes]]:
    """The container's records, with dpkt's errors on a damaged file turned into Truncated."""
    try:
        for ts, buf in records:
            yield (ts if type(ts) is float else float(ts)), buf
    except (dpkt.Error, struct.error, ValueError, IndexError) as exc:
        raise Truncated(f"capture file ends inside a record ({type(exc).__name__})",
                        0, "capture") from None


class _Stream:
    """Reassembly state of one direction of one TCP connection."""

    __slots__ = ("src", "dst", "isn", "base", "delivered", "framer", "pending", "heap",
                 "pending_bytes", "broken", "last_frame", "last_time", "max_apdu", "guessing",
                 "head")

    def __init__(self, src: str, dst: str, base: int, isn: int | None, max_apdu: int) -> None:
        self.src = src
        self.dst = dst
        self.isn = isn
        self.base = base  # absolute sequence number of stream offset 0
        self.delivered = 0  # stream offset of the next byte the framer expects
        self.max_apdu = max_apdu
        self.framer = StreamFramer(max_apdu)
        self.pending: dict[int, bytes] = {}  # out-of-order data by stream offset
        self.heap: list[int] = []
        self.pending_bytes = 0
        self.broken = False
        self.last_frame = 0
        self.last_time = 0.0
        # Off the C12.22 ports (heuristic reading): not yet known to carry C12.22, so
        # nothing of it is reported until its first bytes have the ACSE structure.
        self.guessing = False
        self.head = bytearray()  # the first GUESS_BYTES of the stream, while guessing

    def offset_of(self, seq: int) -> int:
        """Stream offset of an absolute sequence number, taking the nearer of the 32-bit wraps."""
        rel = (seq - self.base - self.delivered) & _MASK32
        if rel & _HALF32:
            rel -= 1 << 32
        return self.delivered + rel

    def push(self, data: bytes, out: list[bytes]) -> None:
        """Give in-order bytes to the framer; whole APDUs go to ``out``. Raises DecodeError."""
        if self.guessing and len(self.head) < GUESS_BYTES:
            self.head += data[: GUESS_BYTES - len(self.head)]
        self.delivered += len(data)
        framer = self.framer
        if not framer.buffered:
            # Common case: the segment is exactly one APDU; skip the framer's copies.
            size = apdu_size(data, 0, self.max_apdu)
            if size == len(data):
                out.append(data)
                return
        apdus = framer.feed(data)
        out.extend(apdus)
        if apdus and framer.buffered:
            # The framer reports bad bytes after a good APDU on the next feed; ask now.
            framer.feed(b"")

    def drain(self, out: list[bytes]) -> None:
        """Deliver buffered out-of-order segments that have become in order."""
        heap = self.heap
        while heap and heap[0] <= self.delivered:
            off = heapq.heappop(heap)
            data = self.pending.pop(off)
            self.pending_bytes -= len(data)
            skip = self.delivered - off
            if skip < len(data):
                self.push(data[skip:] if skip else data, out)

    def hold(self, off: int, data: bytes, max_pending: int) -> None:
        """Keep an out-of-order segment. Raises DecodeLimitExceeded when over the caps."""
        old = self.pending.get(off)
        if old is not None:
            if len(old) >= len(data):
                return
            self.pending_bytes -= len(old)
        else:
            if len(self.pending) >= MAX_PENDING_SEGMENTS:
                raise DecodeLimitExceeded(
                    f"more than {MAX_PENDING_SEGMENTS} out-of-order TCP segments",
                    off, "tcp")
            heapq.heappush(self.heap, off)
        self.pending[off] = data
        self.pending_bytes += len(data)
        if self.guessing:
            max_pending = min(max_pending, GUESS_PENDING_BYTES)
        if self.pending_bytes > max_pending:
            raise DecodeLimitExceeded(
                f"more than {max_pending} out-of-order TCP bytes waiting for a gap",
                off, "tcp")

    def leftover(self) -> int:
        """Bytes that never made a whole APDU."""
        return self.framer.buffered + self.pending_bytes

    def give_up(self) -> None:
        self.broken = True
        self.pending.clear()
        self.heap.clear()
        self.pending_bytes = 0


def _endpoints(addrs: bytes, ports: bytes) -> tuple[str, str]:
    """("ip:port", "ip:port") for source and destination, IPv6 in brackets."""
    sport = ports[0] << 8 | ports[1]
    dport = ports[2] << 8 | ports[3]
    if len(addrs) == 8:
        return (f"{socket.inet_ntoa(addrs[:4])}:{sport}",
                f"{socket.inet_ntoa(addrs[4:])}:{dport}")
    return (f"[{socket.inet_ntop(socket.AF_INET6, addrs[:16])}]:{sport}",
            f"[{socket.inet_ntop(socket.AF_INET6, addrs[16:])}]:{dport}")


def _link_offset(linktype: int) -> Callable[[bytes], tuple[int, int]]:
    """A function giving (ethertype, offset of the IP header) of a frame of this link type.

    Ethertype 0 means "not IP"; the caller skips such frames.
    """
    if linktype == _LINK_ETHERNET:
        def ethernet(buf: bytes) -> tuple[int, int]:
            if len(buf) < 14:
                return 0, 0
            etype = buf[12] << 8 | buf[13]
            off = 14
            while etype in _ETH_VLAN and len(buf) >= off + 4:
                etype = buf[off + 2] << 8 | buf[off + 3]
                off += 4
            return etype, off
        return ethernet
    if linktype == _LINK_SLL:
        return lambda buf: ((buf[14] << 8 | buf[15], 16) if len(buf) >= 16 else (0, 0))
    if linktype == _LINK_SLL2:
        return lambda buf: ((buf[0] << 8 | buf[1], 20) if len(buf) >= 20 else (0, 0))
    if linktype in (_LINK_NULL, _LINK_LOOP):
        def null(buf: bytes) -> tuple[int, int]:
            if len(buf) < 4:
                return 0, 0
            # DLT_NULL is in the capturing host's byte order, DLT_LOOP in network order.
            family = int.from_bytes(buf[:4], "big")
            if family > 0xFFFF and linktype == _LINK_NULL:
                family = int.from_bytes(buf[:4], "little")
            if family == 2:
                return _ETH_IPV4, 4
            if family in _AF_INET6_VALUES:
                return _ETH_IPV6, 4
            return 0, 0
        return null
    if linktype in _LINK_RAW or linktype in (_LINK_RAW4, _LINK_RAW6):
        def raw(buf: bytes) -> tuple[int, int]:
            version = buf[0] >> 4 if buf else 0
            if version == 4:
                return _ETH_IPV4, 0
            if version == 6:
                return _ETH_IPV6, 0
            return 0, 0
        return raw
    raise DecodeError(f"link type {linktype} is not supported "
                      f"(supported: {sorted(SUPPORTED_LINK_TYPES)})", 0, "capture")


def _ipv6_transport(buf: bytes, off: int, end: int) -> tuple[int, int, bool]:
    """Walk IPv6 extension headers: (protocol, offset of its header, is a fragment)."""
    proto = buf[off + 6]
    pos = off + 40
    fragment = False
    while proto in _IPV6_EXT:
        if pos + 8 > end or pos + 8 > len(buf):
            return -1, pos, fragment
        if proto == 44:
            # Fragment header: only an unfragmented "atomic" fragment can be read as is.
            if (buf[pos + 2] << 8 | buf[pos + 3]) != 0:
                fragment = True
            proto, pos = buf[pos], pos + 8
        elif proto == 51:
            proto, pos = buf[pos], pos + (buf[pos + 1] + 2) * 4
        else:
            proto, pos = buf[pos], pos + (buf[pos + 1] + 1) * 8
    return proto, pos, fragment


def _reverse(key: bytes) -> bytes:
    """The flow key of the other direction (addresses and ports swapped)."""
    half = (len(key) - 4) // 2
    return key[half : 2 * half] + key[:half] + key[-2:] + key[-4:-2]


def _read(fileobj: IO[bytes], ports: frozenset[int] | None, heuristic: bool, max_pending: int,
          max_apdu: int) -> Iterator[CapturedApdu]:
    """The reader proper: one loop over frames, kept flat because it runs per packet."""
    linktype, container = _open_container(fileobj)
    link = _link_offset(linktype)
    streams: dict[bytes, _Stream] = {}
    udp_names: dict[bytes, tuple[str, str]] = {}
    # Heuristic verdicts per conversation (the smaller of the two flow keys): True once it
    # looked like C12.22, False once its TCP bytes could not start an APDU.
    verdicts: dict[bytes, bool] = {}
    frame = 0
    for ts, buf in _records(container):
        frame += 1
        # ---- link layer
        if linktype == _LINK_ETHERNET and len(buf) >= 14:
            etype = buf[12] << 8 | buf[13]
            off = 14
            if etype in _ETH_VLAN:
                etype, off = link(buf)
        else:
            etype, off = link(buf)
        # ---- network layer: addrs = src+dst addresses, t = transport header, end = IP end
        fragment = False
        if etype == _ETH_IPV4:
            if len(buf) < off + 20 or buf[off] >> 4 != 4:
                continue
            proto = buf[off + 9]
            if proto != 6 and proto != 17:
                continue
            total = buf[off + 2] << 8 | buf[off + 3]
            # Total length 0 is what TCP segmentation offload leaves in a capture.
            end = off + total if total else len(buf)
            if buf[off + 6] & 0x3F or buf[off + 7]:
                if buf[off + 6] & 0x1F or buf[off + 7]:
                    continue  # a later fragment: no transport header to look at
                fragment = True
            addrs = buf[off + 12 : off + 20]
            t = off + (buf[off] & 15) * 4
            if t < off + 20:
                continue  # header length under the minimum: not a packet anyone would accept
        elif etype == _ETH_IPV6:
            if len(buf) < off + 40 or buf[off] >> 4 != 6:
                continue
            end = off + 40 + (buf[off + 4] << 8 | buf[off + 5])
            proto = buf[off + 6]
            t = off + 40
            if proto != 6 and proto != 17:
                proto, t, fragment = _ipv6_transport(buf, off, end)
                if proto != 6 and proto != 17:
                    continue
            addrs = buf[off + 8 : off + 40]
        else:
            continue
        if len(buf) < t + (20 if proto == 6 else 8):
            continue
        # ---- transport layer
        guessed = False
        if ports is not None and (buf[t] << 8 | buf[t + 1]) not in ports \
                and (buf[t + 2] << 8 | buf[t + 3]) not in ports:
            if not heuristic:
                continue
            guessed = True
        key = addrs + buf[t : t + 4]
        truncated = fragment or end > len(buf)
        if proto == 17:
            if not guessed:
                yield from _udp(buf, t, end, key, udp_names, frame, ts, truncated, max_apdu)
                continue
            # Each datagram is one APDU: one that looks like C12.22 marks its conversation.
            conversation = min(key, _reverse(key))
            for rec in _udp(buf, t, end, key, udp_names, frame, ts, truncated, max_apdu):
                if verdicts.get(conversation) or rec.error is None and acse.looks_like_apdu(rec.data):
                    if not verdicts.get(conversation):
                        _remember(verdicts, conversation, True)
                    yield rec
            continue
        flags = buf[t + 13]
        seq = int.from_bytes(buf[t + 4 : t + 8], "big")
        start = t + (buf[t + 12] >> 4) * 4
        if start < t + 20:
            continue  # TCP data offset under the minimum header
        payload = buf[start:end]
        stream = streams.get(key)
        if guessed and stream is None:
            conversation = min(key, _reverse(key))
            if verdicts.get(conversation) is False:
                if not flags & _TCP_SYN:
                    continue  # known not to be C12.22: the cheapest way past it
                del verdicts[conversation]  # a new connection on the tuple: judge afresh
            if not payload:
                # No stream for a SYN or a bare ACK off the C12.22 ports (a port scan holds
                # nothing): it starts with its first data, whose sequence number is offset 0.
                continue
        if flags & _TCP_SYN:
            if stream is None or stream.isn != seq:
                if stream is not None:
                    yield from _finish(stream)  # a new connection on the same 4-tuple
                    if guessed:  # and maybe another protocol: judge it afresh
                        verdicts.pop(min(key, _reverse(key)), None)
                stream = streams[key] = _Stream(*_endpoints(addrs, key[-4:]),
                                                (seq + 1) & _MASK32, seq, max_apdu)
                if guessed:
                    _guess(stream, verdicts.get(min(key, _reverse(key))))
            seq = (seq + 1) & _MASK32
        if not payload:
            continue
        if stream is None:
            # Capture started mid-connection: the first data we see is offset 0.
            stream = streams[key] = _Stream(*_endpoints(addrs, key[-4:]), seq, None, max_apdu)
            if guessed:
                _guess(stream, verdicts.get(min(key, _reverse(key))))
        if stream.broken:
            continue
        stream.last_frame, stream.last_time = frame, ts
        out: list[bytes] = []
        try:
            if truncated:
                raise Truncated("TCP segment not captured whole (snap length or IP fragment)",
                                0, "tcp")
            off_ = stream.offset_of(seq)
            delivered = stream.delivered
            if off_ == delivered:
                stream.push(payload, out)
                if stream.heap:
                    stream.drain(out)
            elif off_ < delivered:
                # Retransmission, possibly with new bytes at its end.
                if off_ + len(payload) > delivered:
                    stream.push(payload[delivered - off_ :], out)
                    if stream.heap:
                        stream.drain(out)
            else:
                stream.hold(off_, payload, max_pending)
        except DecodeError as exc:
            if stream.guessing and acse.shape_verdict(stream.head) is not True:
                _reject(streams, verdicts, key)  # not C12.22 after all: say nothing
                continue
            for apdu in out:
                yield CapturedApdu(frame, ts, stream.src, stream.dst, "tcp", apdu)
            stream.give_up()
            yield CapturedApdu(frame, ts, stream.src, stream.dst, "tcp", payload, exc)
            continue
        if stream.guessing and stream.head:
            verdict = acse.shape_verdict(stream.head)
            if verdict is None and len(stream.head) < GUESS_BYTES:
                continue  # not enough of it yet (nothing can be out: no whole APDU yet)
            if not verdict:
                _reject(streams, verdicts, key)
                continue
            _remember(verdicts, min(key, _reverse(key)), True)
            stream.guessing = False
            stream.head = bytearray()
            other = streams.get(_reverse(key))
            if other is not None:
                other.guessing = False
        for apdu in out:
            yield CapturedApdu(frame, ts, stream.src, stream.dst, "tcp", apdu)
    for stream in streams.values():
        yield from _finish(stream)


def _remember(verdicts: dict[bytes, bool], conversation: bytes, verdict: bool) -> None:
    verdicts.pop(conversation, None)
    verdicts[conversation] = verdict
    if len(verdicts) > MAX_VERDICTS:
        # Forgetting a verdict only means judging that conversation again if it goes on.
        del verdicts[next(iter(verdicts))]


def _reject(streams: dict[bytes, _Stream], verdicts: dict[bytes, bool], key: bytes) -> None:
    """A conversation off the C12.22 ports is not C12.22: forget both its directions."""
    for k in (key, _reverse(key)):
        stream = streams.pop(k, None)
        if stream is not None:
            stream.give_up()
    _remember(verdicts, min(key, _reverse(key)), False)


def _guess(stream: _Stream, verdict: bool | None) -> None:
    """Start a stream off the C12.22 ports with what its conversation is known to be."""
    if verdict is None:
        stream.guessing = True
    elif not verdict:
        stream.give_up()


def _finish(stream: _Stream) -> Iterator[CapturedApdu]:
    """At the end of a connection: report bytes that never made a whole APDU."""
    if stream.broken or stream.guessing:
        return
    left = stream.leftover()
    if left:
        yield CapturedApdu(
            stream.last_frame, stream.last_time, stream.src, stream.dst, "tcp", b"",
            Truncated(f"TCP stream ends with {left} bytes that make no whole APDU",
                      stream.delivered, "tcp"))
    stream.give_up()


def _udp(buf: bytes, t: int, end: int, key: bytes, names: dict[bytes, tuple[str, str]],
         frame: int, ts: float, truncated: bool, max_apdu: int) -> Iterator[CapturedApdu]:
    """One datagram is one APDU (digest 6.2): check that its BER length says so."""
    pair = names.get(key)
    if pair is None:
        pair = names[key] = _endpoints(key[:-4], key[-4:])
    ulen = buf[t + 4] << 8 | buf[t + 5]
    payload = buf[t + 8 : min(t + ulen, end)] if ulen >= 8 else buf[t + 8 : end]
    error: DecodeError | None = None
    try:
        if truncated:
            raise Truncated("UDP datagram not captured whole (snap length or IP fragment)",
                            0, "udp")
        if ulen < 8 or t + ulen > end:
            raise DecodeError(f"UDP length {ulen} does not fit the IP packet", 0, "udp")
        size = apdu_size(payload, 0, max_apdu)
        if size is None or size > len(payload):
            raise Truncated(f"UDP datagram of {len(payload)} bytes holds part of an APDU",
                            len(payload), "udp")
        if size < len(payload):
            raise DecodeError(f"{len(payload) - size} bytes after the APDU in a UDP datagram",
                              size, "udp")
    except DecodeError as exc:
        error = exc
    yield CapturedApdu(frame, ts, pair[0], pair[1], "udp", payload, error)


# --------------------------------------------------------------------------- writing

Endpoint = tuple[str, int]


def _mac(address: bytes) -> bytes:
    """A stable, locally administered MAC address for an IP address."""
    return b"\x02\x00" + zlib.crc32(address).to_bytes(4, "big")


class _AppendWriter:
    """Writes records to an existing pcap file, in that file's byte order and time precision."""

    def __init__(self, fileobj: IO[bytes], big_endian: bool, nano: bool) -> None:
        self._f = fileobj
        self._hdr = dpkt.pcap.PktHdr if big_endian else dpkt.pcap.LEPktHdr
        self._scale = 1_000_000_000 if nano else 1_000_000

    def writepkt_time(self, pkt: bytes, ts: float) -> None:
        sec = int(ts)
        frac = round((ts - sec) * self._scale)
        if frac >= self._scale:
            sec, frac = sec + 1, frac - self._scale
        hdr = self._hdr(tv_sec=sec, tv_usec=frac, caplen=len(pkt), len=len(pkt))
        self._f.write(bytes(hdr) + pkt)


class PcapWriter:
    """Writes a classic pcap (Ethernet) of C12.22 APDUs over TCP or UDP.

    Times default to a clock that starts at ``start_time`` and moves on by
    ``time_step`` per frame; an explicit ``time=`` moves the clock there.
    ``mss`` splits every TCP APDU longer than it over several segments.
    ``flush=True`` flushes after every frame (for a live trace).
    """

    SNAPLEN = 262144

    def __init__(self, fileobj: BinaryIO, *, start_time: float = 0.0, time_step: float = 0.001,
                 mss: int | None = None, flush: bool = False, _append: bool = False,
                 _big_endian: bool = False, _nano: bool = False, _owns: bool = False) -> None:
        self._f = fileobj
        self._owns = _owns
        self._flush = flush
        self.mss = mss
        self.time_step = time_step
        self._epoch = start_time  # the clock is epoch + ticks * step: no drift from adding floats
        self._ticks = -1
        self._ports = 49152
        self.frames = 0
        if _append:
            self._out: dpkt.pcap.Writer | _AppendWriter = _AppendWriter(fileobj, _big_endian,
                                                                        _nano)
        else:
            self._out = dpkt.pcap.Writer(fileobj, snaplen=self.SNAPLEN,
                                         linktype=dpkt.pcap.DLT_EN10MB)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, append: bool = False,
             flush: bool = False, **options: float | int | None) -> PcapWriter:
        """Open ``path`` for writing; with ``append``, add frames to an existing Ethernet pcap.

        Raises ConfigurationError when the existing file is not an Ethernet pcap.
        """
        if append and os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, "rb") as existing:
                head = existing.read(24)
            try:
                reader = dpkt.pcap.Reader(io.BytesIO(head))
            except (dpkt.Error, ValueError, struct.error) as exc:
                raise ConfigurationError(f"{os.fspath(path)}: not a pcap file ({exc})") from None
            if reader.datalink() != dpkt.pcap.DLT_EN10MB:
                raise ConfigurationError(
                    f"{os.fspath(path)}: link type {reader.datalink()}, not Ethernet")
            big_endian = head[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
            nano = head[:4] in (b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1")
            fileobj = open(path, "ab")  # noqa: SIM115 - closed by close()
            return cls(fileobj, flush=flush, _append=True, _big_endian=big_endian,
                       _nano=nano, _owns=True, **options)  # type: ignore[arg-type]
        fileobj = open(path, "wb")  # noqa: SIM115 - closed by close()
        return cls(fileobj, flush=flush, _owns=True, **options)  # type: ignore[arg-type]

    # -- frames

    def _time(self, time: float | None) -> float:
        if time is not None:
            self._epoch, self._ticks = time, 0
        else:
            self._ticks += 1
        # Whole microseconds, so dpkt's rounding never carries into the seconds field.
        return round(self._epoch + self._ticks * self.time_step, 6)

    def write_frame(self, frame: bytes, time: float | None = None) -> None:
        """Write one raw Ethernet frame."""
        self._out.writepkt_time(frame, self._time(time))
        self.frames += 1
        if self._flush:
            self._f.flush()

    def _ip_frame(self, src: Endpoint, dst: Endpoint, proto: int,
                  segment: dpkt.tcp.TCP | dpkt.udp.UDP) -> bytes:
        s_addr, d_addr = ip_address(src[0]), ip_address(dst[0])
        if type(s_addr) is not type(d_addr):
            raise ValueError(f"{src[0]} and {dst[0]} are not the same IP version")
        if isinstance(s_addr, IPv4Address):
            ip: dpkt.ip.IP | dpkt.ip6.IP6 = dpkt.ip.IP(
                src=s_addr.packed, dst=d_addr.packed, p=proto, ttl=64, data=segment)
            etype = dpkt.ethernet.ETH_TYPE_IP
        else:
            assert isinstance(s_addr, IPv6Address)
            ip = dpkt.ip6.IP6(src=s_addr.packed, dst=d_addr.packed, nxt=proto, hlim=64,
                              plen=len(segment), data=segment)
            ip.p = proto
            ip.extension_hdrs = {}
            etype = dpkt.ethernet.ETH_TYPE_IP6
        eth = dpkt.ethernet.Ethernet(src=_mac(s_addr.packed), dst=_mac(d_addr.packed),
                                     type=etype, data=ip)
        return bytes(eth)

    def tcp_segment(self, src: Endpoint, dst: Endpoint, *, seq: int, ack: int, flags: int,
                    payload: bytes = b"", time: float | None = None,
                    options: bytes = b"") -> None:
        """Write one TCP segment exactly as given (``flags`` are dpkt.tcp.TH_* bits)."""
        tcp = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq & _MASK32, ack=ack & _MASK32,
                           flags=flags, win=65535, opts=options, data=payload)
        tcp.off = (20 + len(options)) // 4
        self.write_frame(self._ip_frame(src, dst, 6, tcp), time)

    def tcp_connection(self, client: Endpoint | None = None,
                       server: Endpoint = ("10.0.0.2", C1222_PORT), *,
                       client_isn: int = 1000, server_isn: int = 5000, handshake: bool = True,
                       time: float | None = None) -> TcpConnection:
        """Start a TCP connection (three-way handshake unless ``handshake=False``).

        Without ``client``, each connection gets the next ephemeral port on 10.0.0.1.
        """
        if client is None:
            client = ("10.0.0.1" if ip_address(server[0]).version == 4 else "fd00::1",
                      self._ports)
            self._ports = self._ports + 1 if self._ports < 65535 else 49152
        conn = TcpConnection(self, client, server, client_isn, server_isn)
        if handshake:
            conn.handshake(time=time)
        return conn

    def udp(self, src: Endpoint, dst: Endpoint, apdu: bytes, *, time: float | None = None) -> None:
        """Write one UDP datagram carrying ``apdu``."""
        udp = dpkt.udp.UDP(sport=src[1], dport=dst[1], data=apdu)
        udp.ulen = len(udp)
        self.write_frame(self._ip_frame(src, dst, 17, udp), time)

    # -- lifetime

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        self._f.flush()
        if self._owns:
            self._f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpConnection:
    """One TCP connection in a :class:`PcapWriter`, keeping sequence and acknowledgement numbers.

    Each direction's stream offsets start at 0 after the SYN. :meth:`send`
    writes an APDU after everything sent so far; :meth:`segment` writes bytes
    at any offset (for out-of-order and retransmission tests) and moves the
    direction's end to the furthest byte written.
    """

    def __init__(self, writer: PcapWriter, client: Endpoint, server: Endpoint,
                 client_isn: int, server_isn: int) -> None:
        self.writer = writer
        self.client = client
        self.server = server
        self._isn = {True: client_isn & _MASK32, False: server_isn & _MASK32}
        self._sent = {True: 0, False: 0}  # bytes sent per direction (True = from the client)
        self._fin = {True: 0, False: 0}  # 1 once the direction sent its FIN

    def _seq(self, from_client: bool, offset: int) -> int:
        return (self._isn[from_client] + 1 + offset) & _MASK32

    def _ack(self, from_client: bool) -> int:
        peer = not from_client
        return self._seq(peer, self._sent[peer] + self._fin[peer])

    def _ends(self, from_client: bool) -> tuple[Endpoint, Endpoint]:
        return (self.client, self.server) if from_client else (self.server, self.client)

    def handshake(self, *, time: float | None = None) -> None:
        """SYN, SYN-ACK, ACK."""
        w, c, s = self.writer, self.client, self.server
        w.tcp_segment(c, s, seq=self._isn[True], ack=0, flags=dpkt.tcp.TH_SYN, time=time,
                      options=b"\x02\x04\x05\xb4")  # MSS 1460
        w.tcp_segment(s, c, seq=self._isn[False], ack=self._seq(True, 0),
                      flags=dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, options=b"\x02\x04\x05\xb4")
        w.tcp_segment(c, s, seq=self._seq(True, 0), ack=self._seq(False, 0),
                      flags=dpkt.tcp.TH_ACK)

    def segment(self, payload: bytes, *, from_client: bool = True, offset: int | None = None,
                time: float | None = None) -> None:
        """Write one data segment at stream ``offset`` (default: right after the data sent)."""
        if offset is None:
            offset = self._sent[from_client]
        src, dst = self._ends(from_client)
        self.writer.tcp_segment(src, dst, seq=self._seq(from_client, offset),
                                ack=self._ack(from_client),
                                flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK,
                                payload=payload, time=time)
        self._sent[from_client] = max(self._sent[from_client], offset + len(payload))

    def send(self, apdu: bytes, *, from_client: bool = True, time: float | None = None,
             split: int | Sequence[int] | None = None) -> None:
        """Send ``apdu``: one segment, or pieces of ``split`` bytes, or of the given sizes.

        Without ``split``, the writer's ``mss`` (if any) limits each segment.
        """
        for piece in _pieces(apdu, split if split is not None else self.writer.mss):
            self.segment(piece, from_client=from_client, time=time)
            time = None

    def close(self, *, time: float | None = None) -> None:
        """FIN from the client, FIN-ACK from the server, last ACK."""
        w, c, s = self.writer, self.client, self.server
        fin_ack = dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK
        w.tcp_segment(c, s, seq=self._seq(True, self._sent[True]), ack=self._ack(True),
                      flags=fin_ack, time=time)
        self._fin[True] = 1
        w.tcp_segment(s, c, seq=self._seq(False, self._sent[False]), ack=self._ack(False),
                      flags=fin_ack)
        self._fin[False] = 1
        w.tcp_segment(c, s, seq=self._seq(True, self._sent[True] + 1), ack=self._ack(True),
                      flags=dpkt.tcp.TH_ACK)


def _pieces(data: bytes, split: int | Sequence[int] | None) -> list[bytes]:
    """Cut ``data`` into pieces of ``split`` bytes, or of the listed sizes (the rest last)."""
    if split is None or (isinstance(split, int) and split >= len(data)):
        return [data]
    if isinstance(split, int):
        if split <= 0:
            raise ValueError("split must be positive")
        return [data[i : i + split] for i in range(0, len(data), split)]
    out, pos = [], 0
    for size in split:
        if size <= 0:
            raise ValueError("split sizes must be positive")
        out.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        out.append(data[pos:])
    return [piece for piece in out if piece]
