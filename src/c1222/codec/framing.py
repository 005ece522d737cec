"""Split a TCP byte stream into whole APDUs (digest 6.1).

C12.22 over TCP has no framing of its own: APDUs (`60 <BER length> ...`) are
written back to back, so the outer BER length is the frame boundary.
"""

from __future__ import annotations

from typing import Final

from c1222 import limits
from c1222.codec.ber import FROM_BYTES
from c1222.errors import BerError, DecodeError, DecodeLimitExceeded

APDU_TAG: Final = 0x60


def apdu_size(buf: bytes | bytearray | memoryview, pos: int = 0,
              max_size: int = limits.MAX_APDU_SIZE) -> int | None:
    """Total size of the APDU starting at ``pos``, or None if more bytes are needed.

    Raises BerError for bytes that cannot start an APDU and DecodeLimitExceeded
    for one larger than ``max_size`` - before any of it is buffered.
    """
    have = len(buf) - pos
    if have < 1:
        return None
    if buf[pos] != APDU_TAG:
        raise BerError(f"APDU starts with {buf[pos]:#04x}, not 0x60", pos, "apdu")
    if have < 2:
        return None
    first = buf[pos + 1]
    if first < 0x80:
        size = 2 + first
    else:
        count = first & 0x7F
        if count == 0 or count > limits.MAX_LENGTH_OCTETS:
            raise BerError("bad APDU length form", pos + 1, "apdu")
        if have < 2 + count:
            return None
        length = FROM_BYTES(buf[pos + 2 : pos + 2 + count], "big")
        if length < 0x80 or length >> (8 * (count - 1)) == 0:
            raise BerError("non-minimal APDU length", pos + 1, "apdu")
        size = 2 + count + length
    if size > max_size:
        raise DecodeLimitExceeded(f"APDU of {size} bytes over the limit of {max_size}",
                                  pos, "apdu")
    return size


class StreamFramer:
    """Accumulates stream bytes and yields whole APDUs, whatever the chunking.

    After an error the framer is unusable: the stream has lost sync, and the
    transport should close the connection rather than guess where the next
    APDU starts.
    """

    __slots__ = ("_buf", "_max_size", "_error")

    def __init__(self, max_size: int = limits.MAX_APDU_SIZE) -> None:
        self._buf = bytearray()
        self._max_size = max_size
        self._error: DecodeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a whole APDU."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every APDU it completes, in order."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        try:
            while True:
                size = apdu_size(buf, pos, self._max_size)
                if size is None or len(buf) - pos < size:
                    break
                out.append(bytes(buf[pos : pos + size]))
                pos += size
        except DecodeError as exc:
            # Deliver the APDUs before the bad bytes; the error comes with the next feed.
            self._error = exc
            if not out:
                raise
        finally:
            del buf[:pos]
        return out


def split_apdus(data: bytes, max_size: int = limits.MAX_APDU_SIZE) -> tuple[list[bytes], bytes]:
    """Split a complete byte string: the whole APDUs and the incomplete tail."""
    framer = StreamFramer(max_size)
    apdus = framer.feed(data)
    return apdus, bytes(framer._buf)
