"""Native addresses: where a node is reached on its network (Register, Resolve; digest 7.2).

The layout for IP networks is **[U] unverified**: RFC 6142's binary form could not be read
(c1222-network.md, "Native addresses"). Itron's 2009 stack stores a 6-byte binary address and
calls the change from a string to binary a standard change, so we send what that suggests:

* IPv4: 4 address bytes + 2-byte port (6 bytes), big-endian;
* IPv6: 16 address bytes + 2-byte port (18 bytes), big-endian.

We accept 4 and 16 bytes too (port 1153, C12.22's own, when absent) and, from peers that send
text (this project before issue 16, and others), ASCII ``host:port`` / ``[v6]:port`` / ``host``
with an IP *literal*: a native address is written by the peer, so it never makes us look a
name up. Text is tried first (all printable ASCII that parses as IP[:port]); otherwise the
length says which binary form it is; anything else is a :class:`~c1222.errors.DecodeError`.

Ambiguities, both by length: a binary address whose bytes are all printable ASCII and read as
IP text (e.g. ``b"1::1"``, the IPv4 address 49.58.58.49) is taken as text, since a peer that
sends text means it and ours always send the port; and text of 4, 6, 16 or 18 bytes that is not
IP text (``b"meter.example:1153"``) is taken as binary, an address that was never a name.
"""

from __future__ import annotations

import ipaddress

from c1222.codes import C1222_PORT
from c1222.errors import BerError, LocalProtocolError

_PATH = "native_address"


def encode_native_address(host: str, port: int) -> bytes:
    """``host`` (an IPv4 or IPv6 literal) and ``port`` in binary: 6 or 18 bytes.

    LocalProtocolError for a host that is not an IP literal or a port outside 0..65535.
    """
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise LocalProtocolError(f"native address: {host!r} is not an IP address") from None
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"native address: port {port} is not 0 .. 65535")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer: the 6-byte form
    return ip.packed + port.to_bytes(2, "big")


def decode_native_address(data: bytes) -> tuple[str, int]:
    """(host, port) of a native address, binary or text (module docstring); DecodeError
    (BerError) for anything else."""
    data = bytes(data)
    text = _text(data)
    if text is not None:
        return text
    size = len(data)
    if size in (4, 6):
        host = str(ipaddress.IPv4Address(data[:4]))
    elif size in (16, 18):
        host = str(ipaddress.IPv6Address(data[:16]))
    else:
        raise BerError(f"native address of {size} bytes is neither IPv4/IPv6 (+port) nor "
                       "text host:port", 0, _PATH)
    port = int.from_bytes(data[-2:], "big") if size in (6, 18) else C1222_PORT
    return host, port


def native_address_text(data: bytes) -> str:
    """The address for people and logs: ``host:port`` / ``[v6]:port``, or its hex when it
    does not decode (a non-IP network's address)."""
    try:
        host, port = decode_native_address(data)
    except BerError:
        return bytes(data).hex()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def native_address_from_text(text: str) -> bytes:
    """The inverse of :func:`native_address_text` (a stored address back to bytes): IP text
    gives the binary form, hex gives its bytes; DecodeError (BerError) for anything else."""
    found = _text(text.encode("ascii", "replace"))
    if found is not None:
        return encode_native_address(*found)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise BerError(f"stored native address {text[:40]!r} is neither host:port nor hex", 0,
                       _PATH) from None


def _text(data: bytes) -> tuple[str, int] | None:
    """The text forms, or None when ``data`` is not printable ASCII that parses as one."""
    if not data or len(data) > 64 or not all(0x21 <= b <= 0x7E for b in data):
        return None
    text = data.decode("ascii")
    port = C1222_PORT
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            return None
        if rest:
            if not rest.startswith(":"):
                return None
            port_or_none = _port(rest[1:])
            if port_or_none is None:
                return None
            port = port_or_none
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port_or_none = _port(port_text)
        if port_or_none is None:
            return None
        port = port_or_none
    else:
        host = text  # a bare IPv4 literal, or a bare IPv6 literal (two colons or more)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(ip), port


def _port(text: str) -> int | None:
    if not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if port <= 0xFFFF else None
