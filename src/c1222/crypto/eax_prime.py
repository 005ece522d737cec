"""EAX' authenticated encryption on AES-128 (C12.22 digest section 5.3).

EAX' takes a *cleartext* N (authenticated only) and a *plaintext* P (encrypted and
authenticated) and produces a ciphertext of P's length plus a 4-byte MAC. C12.22 builds N
from the ACSE header (digest 5.2); that is the policy layer's job, not this module's.

This module is pure: no I/O, no clock, no randomness, no logging. AES comes from the
`cryptography` package; nothing here implements the block cipher by hand.
"""

from __future__ import annotations

import hmac
from typing import Final, NoReturn

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from c1222.codec.ber import FROM_BYTES, as_bytes
from c1222.errors import ConfigurationError, SecurityError

__all__ = ["BLOCK_SIZE", "KEY_SIZE", "MAC_SIZE", "BytesLike", "EaxPrime", "dbl"]

#: What the public methods take for bytes. Compiled with mypyc, a ``bytes`` parameter refuses
#: a bytearray or memoryview (a TypeError), which pure Python accepted.
BytesLike = bytes | bytearray | memoryview

#: AES block size in bytes.
BLOCK_SIZE: Final = 16
#: C12.22 uses AES-128 only (digest 5.1).
KEY_SIZE: Final = 16
#: EAX' tags are 4 bytes, taken from the end of the 16-byte value (digest 5.3).
MAC_SIZE: Final = 4

_MASK_128: Final = (1 << 128) - 1
#: The low 4 bytes of a 16-byte value as an integer: the MAC (digest 5.3).
_MAC_MASK: Final = (1 << 32) - 1
#: Clears the top bit of bytes 12 and 14 of N' to make the first counter (digest 5.3 step 3).
_CTR_MASK: Final = _MASK_128 ^ (0x80 << 24) ^ (0x80 << 8)
#: Texts up to this many blocks (4 KiB) take their CTR keystream from the ECB context.
_CTR_BLOCKS_CACHED: Final = 256
#: Texts up to this many bytes go through CMAC' as one integer; longer ones as three parts.
_WHOLE: Final = 128
#: blocks -> (0101..01, 00..01..02..) as integers of that many 16-byte blocks (bounded by
#: _CTR_BLOCKS_CACHED entries, 2 MiB at most).
_COUNTER_SPREAD: Final[dict[int, tuple[int, int]]] = {}
#: CMAC' padding of a text ``k`` bytes short of a whole block: ``80 00..`` (k bytes), by k.
_PADDING: Final = tuple(b"\x80" + bytes(k - 1) if k else b"" for k in range(BLOCK_SIZE + 1))


def _counter_spread(blocks: int) -> tuple[int, int]:
    repeat = FROM_BYTES(b"\x00" * 15 + b"\x01", "big")
    repeat = FROM_BYTES(repeat.to_bytes(16, "big") * blocks, "big")
    steps = FROM_BYTES(b"".join(i.to_bytes(16, "big") for i in range(blocks)), "big")
    return repeat, steps


def dbl(block: bytes) -> bytes:
    """EAX' doubling: the block read as a *little-endian* 128-bit integer (digest 5.3, 10.2 #1).

    Shift left one bit; if a bit falls out of byte 15, XOR 0x87 into byte 0. This is
    RFC 4493 doubling on the byte-reversed block; the big-endian variant fails every vector.
    """
    if len(block) != BLOCK_SIZE:
        raise ValueError("dbl needs one 16-byte block")
    v = FROM_BYTES(block, "little") << 1
    if v >> 128:
        v = (v & _MASK_128) ^ 0x87
    return v.to_bytes(BLOCK_SIZE, "little")


class EaxPrime:
    """EAX' under one AES-128 key, with the per-key state (D, Q) computed once.

    * :meth:`encrypt` / :meth:`decrypt` — security mode 2 (ciphertext + authentication).
    * :meth:`authenticate` / :meth:`verify` — security mode 1: the MAC is EAX' over the
      cleartext N ‖ P with an empty plaintext, i.e. the last 4 bytes of CMAC'_D(N ‖ P)
      (digest 5.2).

    The cipher set-up is kept per key: creating a `cryptography` context costs several times
    an AES pass over a small message, so one ECB context (the CTR keystream of small texts)
    and one zero-IV CBC context (every CMAC') live as long as the key does. The CBC context
    carries its chaining value from one message to the next; :meth:`_cmac` folds that value
    and the CMAC' start block into the first block, so each CMAC' is one ``update`` call.
    Hence an instance (and the key table holding it) is not thread-safe: one event loop owns
    it, as it owns the responder (a pure layer takes no locks, architecture rule 1).

    Verification failures raise :class:`~c1222.errors.SecurityError` with a generic message.
    The key is never shown by ``repr``/``str``.
    """

    __slots__ = ("_aes", "_d", "_q", "_d_int", "_q_int", "_ecb", "_cbc", "_chain")

    def __init__(self, key: BytesLike) -> None:
        key = bytes(key)
        if len(key) != KEY_SIZE:
            # The length is not secret; the bytes are, so they stay out of the message.
            raise ConfigurationError(f"EAX' key must be {KEY_SIZE} bytes, got {len(key)}")
        self._aes = algorithms.AES(key)
        self._ecb = Cipher(self._aes, modes.ECB()).encryptor()
        # Key setup (digest 5.3): L = E(0), D = dbl(L), Q = dbl(D).
        l_block = self._ecb.update(bytes(BLOCK_SIZE))
        self._d = dbl(l_block)
        self._q = dbl(self._d)
        self._d_int = FROM_BYTES(self._d, "big")
        self._q_int = FROM_BYTES(self._q, "big")
        self._cbc = Cipher(self._aes, modes.CBC(bytes(BLOCK_SIZE))).encryptor()
        self._chain = 0  # the CBC context's chaining value (its last output block), as int

    def __repr__(self) -> str:
        return "EaxPrime(key=<hidden>)"

    def __str__(self) -> str:  # a def, not ``__str__ = __repr__``: mypyc cannot alias methods
        return self.__repr__()

    def __reduce__(self) -> NoReturn:
        # Pickling would copy the key into whatever stores the pickle; refuse.
        raise TypeError("EaxPrime objects hold key material and cannot be pickled")

    # -- primitives -------------------------------------------------------------------

    def _cmac(self, start: bytes, data: bytes) -> bytes:
        """CMAC'(S, M) as 16 bytes (digest 5.3); :meth:`_cmac_int` is the working form."""
        return self._cmac_int(FROM_BYTES(start, "big"), data).to_bytes(BLOCK_SIZE, "big")

    def _cmac_int(self, start: int, data: bytes) -> int:
        """CMAC'(S, M): CBC-MAC with IV = S and the CMAC last-block rule (digest 5.3), with
        S and the result as integers.

        A complete last block is XORed with D; otherwise ``80 00..`` padding and Q. The
        message's last block is XORed with D or Q and its first block with S and the
        context's chaining value (CBC with IV = S is CBC with IV = 0 over a first block XORed
        with S), then it is encrypted by one ``update`` of the long-lived CBC context; its
        last output block is the MAC and the next chaining value. A short text is padded and
        XORed as one integer (fewest steps); a long one has only its first and last blocks
        converted (no pass over the middle).
        """
        n = len(data)
        if n and n % BLOCK_SIZE == 0:
            cut, subkey = n - BLOCK_SIZE, self._d_int
        else:
            cut, subkey = n - n % BLOCK_SIZE, self._q_int
        size = cut + BLOCK_SIZE
        first = start ^ self._chain
        if n <= _WHOLE:  # short (a header, a small service): the text as one integer
            # 80 00.. padding appended before the conversion: one integer made, none shifted
            message = FROM_BYTES(data + _PADDING[size - n], "big")
            block = (message ^ (first << (8 * cut)) ^ subkey).to_bytes(size, "big")
        else:  # long: only the first and last blocks are XORed, the middle is copied
            last = FROM_BYTES(data[cut:] + _PADDING[size - n], "big")
            first ^= FROM_BYTES(data[:BLOCK_SIZE], "big")
            block = b"".join((first.to_bytes(BLOCK_SIZE, "big"), data[BLOCK_SIZE:cut],
                              (last ^ subkey).to_bytes(BLOCK_SIZE, "big")))
        out = self._cbc.update(block)
        mac = FROM_BYTES(out[-BLOCK_SIZE:], "big")
        self._chain = mac
        return mac

    def _ctr(self, n_prime: bytes, data: bytes) -> bytes:
        """CTR keystream from N' (digest 5.3 step 3); :meth:`_ctr_int` is the working form."""
        return self._ctr_int(FROM_BYTES(n_prime, "big"), data)

    def _ctr_int(self, n_prime: int, data: bytes) -> bytes:
        """CTR keystream from N' with the top bit of bytes 12 and 14 cleared (digest 5.3 step 3).

        The whole 128-bit counter block is incremented big-endian, as WS-eax does. The
        keystream comes from the long-lived ECB context over the counter blocks, made as one
        integer (N' times 0101..01 plus 00..01..02..: carries move as the increment's do); a
        CTR context takes what is left (long texts, a counter about to wrap).
        """
        counter = n_prime & _CTR_MASK
        n = len(data)
        blocks = -(-n // BLOCK_SIZE)
        if blocks > _CTR_BLOCKS_CACHED or counter + blocks > _MASK_128:
            enc = Cipher(self._aes, modes.CTR(counter.to_bytes(BLOCK_SIZE, "big"))).encryptor()
            return enc.update(data) + enc.finalize()
        spread = _COUNTER_SPREAD.get(blocks)
        if spread is None:
            spread = _COUNTER_SPREAD[blocks] = _counter_spread(blocks)
        repeat, steps = spread
        stream = self._ecb.update((counter * repeat + steps).to_bytes(blocks * BLOCK_SIZE, "big"))
        # the keystream's first n bytes, XORed with the text as integers
        keystream = FROM_BYTES(stream[:n], "big")
        return (keystream ^ FROM_BYTES(data, "big")).to_bytes(n, "big")

    # -- security mode 2 --------------------------------------------------------------

    def encrypt(self, cleartext: BytesLike, plaintext: BytesLike) -> tuple[bytes, bytes]:
        """Encrypt ``plaintext`` bound to ``cleartext``; return ``(ciphertext, mac)``.

        The ciphertext has the plaintext's length; the MAC is 4 bytes (digest 5.3, Encrypt):
        the last 4 bytes of N' XOR C' (N' alone for an empty text).
        """
        n_prime = self._cmac_int(self._d_int, as_bytes(cleartext))
        if not plaintext:
            return b"", (n_prime & _MAC_MASK).to_bytes(MAC_SIZE, "big")
        ciphertext = self._ctr_int(n_prime, as_bytes(plaintext))
        c_prime = self._cmac_int(self._q_int, ciphertext)
        return ciphertext, ((n_prime ^ c_prime) & _MAC_MASK).to_bytes(MAC_SIZE, "big")

    def decrypt(self, cleartext: BytesLike, ciphertext: BytesLike, mac: BytesLike) -> bytes:
        """Verify ``mac`` over ``cleartext`` and ``ciphertext``, then decrypt (digest 5.3).

        The MAC is checked *before* any decryption; a mismatch raises SecurityError.
        """
        n_prime = self._cmac_int(self._d_int, as_bytes(cleartext))
        ciphertext = as_bytes(ciphertext)
        tag = n_prime
        if ciphertext:
            tag ^= self._cmac_int(self._q_int, ciphertext)
        if not hmac.compare_digest((tag & _MAC_MASK).to_bytes(MAC_SIZE, "big"), as_bytes(mac)):
            raise SecurityError()
        if not ciphertext:
            return b""
        return self._ctr_int(n_prime, ciphertext)

    # -- security mode 1 --------------------------------------------------------------

    def authenticate(self, cleartext: BytesLike, body: BytesLike = b"") -> bytes:
        """Mode-1 MAC: EAX' over ``cleartext ‖ body`` with empty plaintext (digest 5.2).

        ``body`` is the EPSEM after the control byte (``[ed-class] services``), sent in clear.
        """
        mac = self._cmac_int(self._d_int, as_bytes(cleartext) + as_bytes(body)) & _MAC_MASK
        return mac.to_bytes(MAC_SIZE, "big")

    def verify(self, cleartext: BytesLike, body: BytesLike, mac: BytesLike) -> None:
        """Check a mode-1 MAC; raise SecurityError when it does not match."""
        if not hmac.compare_digest(self.authenticate(cleartext, body), as_bytes(mac)):
            raise SecurityError()
