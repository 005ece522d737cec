"""EAX' authenticated encryption on AES-128 (C12.22 digest section 5.3).

EAX' takes a *cleartext* N (authenticated only) and a *plaintext* P (encrypted and
authenticated) and produces a ciphertext of P's length plus a 4-byte MAC. C12.22 builds N
from the ACSE header (digest 5.2); that is the policy layer's job, not this module's.

This module is pure: no I/O, no clock, no randomness, no logging. AES comes from the
`cryptography` package; nothing here implements the block cipher by hand.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from c1222.errors import ConfigurationError, SecurityError

__all__ = ["BLOCK_SIZE", "KEY_SIZE", "MAC_SIZE", "EaxPrime", "dbl"]

#: AES block size in bytes.
BLOCK_SIZE = 16
#: C12.22 uses AES-128 only (digest 5.1).
KEY_SIZE = 16
#: EAX' tags are 4 bytes, taken from the end of the 16-byte value (digest 5.3).
MAC_SIZE = 4

_MASK_128 = (1 << 128) - 1


def dbl(block: bytes) -> bytes:
    """EAX' doubling: the block read as a *little-endian* 128-bit integer (digest 5.3, 10.2 #1).

    Shift left one bit; if a bit falls out of byte 15, XOR 0x87 into byte 0. This is
    RFC 4493 doubling on the byte-reversed block; the big-endian variant fails every vector.
    """
    if len(block) != BLOCK_SIZE:
        raise ValueError("dbl needs one 16-byte block")
    v = int.from_bytes(block, "little") << 1
    if v >> 128:
        v = (v & _MASK_128) ^ 0x87
    return v.to_bytes(BLOCK_SIZE, "little")


def _xor16(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(BLOCK_SIZE, "big")


class EaxPrime:
    """EAX' under one AES-128 key, with the per-key state (D, Q) computed once.

    * :meth:`encrypt` / :meth:`decrypt` — security mode 2 (ciphertext + authentication).
    * :meth:`authenticate` / :meth:`verify` — security mode 1: the MAC is EAX' over the
      cleartext N ‖ P with an empty plaintext, i.e. the last 4 bytes of CMAC'_D(N ‖ P)
      (digest 5.2).

    Verification failures raise :class:`~c1222.errors.SecurityError` with a generic message.
    The key is never shown by ``repr``/``str``.
    """

    __slots__ = ("_aes", "_d", "_q")

    def __init__(self, key: bytes) -> None:
        key = bytes(key)
        if len(key) != KEY_SIZE:
            # The length is not secret; the bytes are, so they stay out of the message.
            raise ConfigurationError(f"EAX' key must be {KEY_SIZE} bytes, got {len(key)}")
        self._aes = algorithms.AES(key)
        # Key setup (digest 5.3): L = E(0), D = dbl(L), Q = dbl(D).
        enc = Cipher(self._aes, modes.ECB()).encryptor()
        l_block = enc.update(bytes(BLOCK_SIZE)) + enc.finalize()
        self._d = dbl(l_block)
        self._q = dbl(self._d)

    def __repr__(self) -> str:
        return "EaxPrime(key=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> object:
        # Pickling would copy the key into whatever stores the pickle; refuse.
        raise TypeError("EaxPrime objects hold key material and cannot be pickled")

    # -- primitives -------------------------------------------------------------------

    def _cmac(self, start: bytes, data: bytes) -> bytes:
        """CMAC'(S, M): CBC-MAC with IV = S and the CMAC last-block rule (digest 5.3).

        A complete last block is XORed with D; otherwise ``80 00..`` padding and Q. Runs as
        one AES-CBC pass in `cryptography` and keeps only the last output block.
        """
        n = len(data)
        view = memoryview(data)
        if n and n % BLOCK_SIZE == 0:
            head, last = view[: n - BLOCK_SIZE], _xor16(view[n - BLOCK_SIZE :], self._d)
        else:
            cut = n - n % BLOCK_SIZE
            tail = bytes(view[cut:]) + b"\x80"
            tail += bytes(BLOCK_SIZE - len(tail))
            head, last = view[:cut], _xor16(tail, self._q)
        enc = Cipher(self._aes, modes.CBC(start)).encryptor()
        enc.update(head)  # output discarded; the CBC chaining state is what matters
        return enc.update(last)

    def _ctr(self, n_prime: bytes, data: bytes) -> bytes:
        """CTR keystream from N' with the top bit of bytes 12 and 14 cleared (digest 5.3 step 3).

        `cryptography`'s CTR increments the whole 128-bit block big-endian, as WS-eax does.
        """
        counter = bytearray(n_prime)
        counter[12] &= 0x7F
        counter[14] &= 0x7F
        enc = Cipher(self._aes, modes.CTR(bytes(counter))).encryptor()
        return enc.update(data) + enc.finalize()

    def _tag(self, n_prime: bytes, ciphertext: bytes) -> bytes:
        """The 4-byte MAC: last 4 bytes of N' ⊕ C', or of N' alone for an empty text."""
        if not ciphertext:
            return n_prime[-MAC_SIZE:]
        return _xor16(n_prime, self._cmac(self._q, ciphertext))[-MAC_SIZE:]

    # -- security mode 2 --------------------------------------------------------------

    def encrypt(self, cleartext: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """Encrypt ``plaintext`` bound to ``cleartext``; return ``(ciphertext, mac)``.

        The ciphertext has the plaintext's length; the MAC is 4 bytes (digest 5.3, Encrypt).
        """
        n_prime = self._cmac(self._d, cleartext)
        if not plaintext:
            return b"", n_prime[-MAC_SIZE:]
        ciphertext = self._ctr(n_prime, plaintext)
        return ciphertext, self._tag(n_prime, ciphertext)

    def decrypt(self, cleartext: bytes, ciphertext: bytes, mac: bytes) -> bytes:
        """Verify ``mac`` over ``cleartext`` and ``ciphertext``, then decrypt (digest 5.3).

        The MAC is checked *before* any decryption; a mismatch raises SecurityError.
        """
        n_prime = self._cmac(self._d, cleartext)
        if not hmac.compare_digest(self._tag(n_prime, ciphertext), bytes(mac)):
            raise SecurityError()
        if not ciphertext:
            return b""
        return self._ctr(n_prime, ciphertext)

    # -- security mode 1 --------------------------------------------------------------

    def authenticate(self, cleartext: bytes, body: bytes = b"") -> bytes:
        """Mode-1 MAC: EAX' over ``cleartext ‖ body`` with empty plaintext (digest 5.2).

        ``body`` is the EPSEM after the control byte (``[ed-class] services``), sent in clear.
        """
        return self._cmac(self._d, bytes(cleartext) + bytes(body))[-MAC_SIZE:]

    def verify(self, cleartext: bytes, body: bytes, mac: bytes) -> None:
        """Check a mode-1 MAC; raise SecurityError when it does not match."""
        if not hmac.compare_digest(self.authenticate(cleartext, body), bytes(mac)):
            raise SecurityError()
