"""Per-meter keys from a master secret (docs/fleet.md, Keys)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from c1222.codec.ber import Uid
from c1222.crypto.keys import KeyTable
from c1222.fleet.keys import derive_key, meter_keys

MASTER = bytes(range(16))
TITLE = Uid.parse("2.16.124.113620.1.22.0.123.100000")


def test_the_derivation_is_the_documented_hmac():
    expected = hmac.new(MASTER, b"c1222-fleet-key/2.16.124.113620.1.22.0.123.100000",
                        hashlib.sha256).digest()[:16]
    assert derive_key(MASTER, TITLE) == expected


def test_a_relative_title_derives_the_key_of_its_absolute_form():
    assert derive_key(MASTER, Uid.parse(".123.100000")) == derive_key(MASTER, TITLE)


def test_every_meter_its_own_key_and_every_master_its_own_keys():
    keys = {derive_key(MASTER, Uid.parse(f"2.16.124.113620.1.22.0.123.{i}")) for i in range(500)}
    assert len(keys) == 500
    assert derive_key(bytes(16), TITLE) != derive_key(MASTER, TITLE)


def test_meter_keys_add_the_derived_key_to_the_shared_ones():
    shared = KeyTable({1: bytes(16)})
    table = meter_keys(shared, (2, MASTER), TITLE)
    assert table.key(1) == bytes(16) and table.key(2) == derive_key(MASTER, TITLE)
    assert 2 not in shared  # the shared table is not changed
    assert meter_keys(shared, None, TITLE) is shared


def test_a_master_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError):
        derive_key(b"short", TITLE)
