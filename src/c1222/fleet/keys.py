"""Per-meter EAX' keys derived from one master secret (docs/fleet.md, "Keys").

A fleet of 10,000 meters sharing one key is a lab convenience; a utility gives every meter its
own. ``--master-key ID:HEX`` derives meter keys the way a head-end (``c1222 headend
--master-key``) or a key server derives them again from the AP title alone, so nothing but the
master is distributed. The derivation lives in :func:`c1222.crypto.keys.derive_key` (one place
for both sides); the key id is the master's. Pure: no I/O, no randomness.
"""

from __future__ import annotations

from c1222.codec.ber import Uid
from c1222.crypto.keys import DERIVED_KEY_LABEL as LABEL
from c1222.crypto.keys import KeyTable, derive_key

__all__ = ["LABEL", "derive_key", "meter_keys"]


def meter_keys(shared: KeyTable, master: tuple[int, bytes] | None, ap_title: Uid) -> KeyTable:
    """The key table of one fleet meter: the shared keys, plus its derived key (if any)."""
    if master is None:
        return shared
    table = KeyTable()
    table.update(shared)
    key_id, secret = master
    table.set(key_id, derive_key(secret, ap_title))
    return table
