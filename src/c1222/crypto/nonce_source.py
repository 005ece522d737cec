"""The :class:`NonceSource` protocol: what the pure layers are handed for IVs and invocation ids.

Its implementations are in :mod:`c1222.crypto.nonces`, which re-exports it. It lives in a
module of its own, which is never compiled: mypyc turns a ``Protocol`` class into a plain
class, on which ``@runtime_checkable`` (and so ``isinstance``) fails.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["NonceSource"]


@runtime_checkable
class NonceSource(Protocol):
    """Where a sender gets a fresh IV and a fresh calling AP invocation id (A8)."""

    def iv(self) -> bytes:
        """4 bytes for the AC iv-element. Together with the invocation id drawn just before
        it, never the same pair as an earlier message's (the EAX' nonce must not repeat)."""
        ...

    def invocation_id(self) -> int:
        """A non-zero id for A8, at most 4 bytes, leading byte's top bit clear."""
        ...
