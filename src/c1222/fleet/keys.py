"""Per-meter EAX' keys derived from one master secret (docs/fleet.md, "Keys").

A fleet of 10,000 meters sharing one key is a lab convenience; a utility gives every meter its
own. ``--master-key ID:HEX`` derives meter keys the way a head-end (or a key server) can
derive them again from the AP title alone, so nothing but the master is distributed::

    key(title) = HMAC-SHA256(master, b"c1222-fleet-key/" + title)[:16]

``title`` is the meter's absolute AP title in dotted ASCII (``2.16.124.113620.1.22.0.123.
100000``); the key id is the master's. Pure: no I/O, no randomness.
"""

from __future__ import annotations

import hashlib
import hmac

from c1222.codec.ber import Uid
from c1222.crypto.keys import KeyTable

LABEL = b"c1222-fleet-key/"


def derive_key(master: bytes, ap_title: Uid) -> bytes:
    """The 16-byte AES key of the meter titled ``ap_title`` under ``master``."""
    if len(master) != 16:
        raise ValueError("master: 16 bytes (an AES-128 key)")
    text = str(ap_title.absolute()).encode("ascii")
    return hmac.new(master, LABEL + text, hashlib.sha256).digest()[:16]


def meter_keys(shared: KeyTable, master: tuple[int, bytes] | None, ap_title: Uid) -> KeyTable:
    """The key table of one fleet meter: the shared keys, plus its derived key (if any)."""
    if master is None:
        return shared
    table = KeyTable()
    table.update(shared)
    key_id, secret = master
    table.set(key_id, derive_key(secret, ap_title))
    return table
