"""Access control in the style of decade 4 (docs/spec c1219 section 8)."""

from __future__ import annotations

import pytest

from c1222.errors import ISC
from c1222.tables.access import (
    GROUP_READ, GROUP_WRITE, AccessPolicy, Permission, Principal, User, pad_password,
)
from c1222.tables.decade4 import SecurityLimitingRcd
from c1222.tables.registry import decode_table, encode_table, make_env
from c1222.tables.profile import default_store

POLICY = AccessPolicy(
    users=(User(1, b"READER", GROUP_READ), User(2, "WRITER", GROUP_READ | GROUP_WRITE)),
    tables={6: Permission(read_groups=GROUP_WRITE, write_groups=GROUP_WRITE),
            52: Permission(any_user_read=True)},
    procedures={3: Permission(write_groups=GROUP_WRITE)},
    default=Permission(read_groups=GROUP_READ),
    public_read=frozenset({0, 1}),
    public_write=frozenset({5}),
)


def test_passwords_are_padded_and_checked() -> None:
    assert pad_password("PASSWORD") == b"PASSWORD" + b" " * 12
    assert POLICY.authenticate(1, b"READER") == Principal(1, GROUP_READ)
    assert POLICY.authenticate(1, b"READER" + b" " * 14) == Principal(1, GROUP_READ)
    for user_id, password in ((1, b"WRITER"), (3, b"READER"), (1, b"R" * 21)):
        with pytest.raises(ISC):
            POLICY.authenticate(user_id, password)
    assert "READER" not in repr(POLICY.users[0])  # never print a password


def test_a_user_keeps_its_padded_password_and_its_principal() -> None:
    user = User(2, "WRITER", GROUP_READ | GROUP_WRITE)
    assert user.password == b"WRITER" + b" " * 14  # a str is taken as Latin-1 and padded
    assert user.principal == Principal(2, GROUP_READ | GROUP_WRITE)
    assert user == User(2, b"WRITER", GROUP_READ | GROUP_WRITE)
    assert POLICY.authenticate(2, "WRITER") == POLICY.principal(2) == Principal(2, 3)


def test_public_tables_need_no_logon() -> None:
    assert POLICY.may_access_table(0, None, write=False)
    assert not POLICY.may_access_table(3, None, write=False)
    assert POLICY.may_access_table(5, None, write=True)
    with pytest.raises(ISC):
        POLICY.check_table(3, None, write=False)


def test_groups_and_flags() -> None:
    reader, writer = POLICY.principal(1), POLICY.principal(2)
    assert POLICY.may_access_table(3, reader, write=False)
    assert not POLICY.may_access_table(3, reader, write=True)  # default: no write groups
    assert not POLICY.may_access_table(6, reader, write=False)
    assert POLICY.may_access_table(6, writer, write=True)
    assert POLICY.may_access_table(52, Principal(9, 0), write=False)  # FLAG1: any user
    with pytest.raises(ISC):
        POLICY.principal(7)


def test_procedures() -> None:
    assert POLICY.may_run_procedure(3, POLICY.principal(2))
    assert not POLICY.may_run_procedure(3, POLICY.principal(1))
    assert not POLICY.may_run_procedure(3, None)
    assert not POLICY.may_run_procedure(4, POLICY.principal(2))  # default has no write groups


def test_export_as_decade4_tables() -> None:
    limits, security, access = POLICY.to_tables()
    assert limits == SecurityLimitingRcd(2, 20, 0, 0, 3)
    gc = default_store().gen_config
    env = make_env(gc, {41: limits})
    for number, value in ((41, limits), (42, security), (44, access)):
        raw = encode_table(number, value, env)
        assert decode_table(number, raw, env) == value
    assert len(encode_table(42, security, env)) == 2 * 21
    proc_entry = access.entries[-1]
    assert proc_entry.table_or_proc.proc_flag and proc_entry.table_or_proc.tbl_proc_nbr == 3
    assert encode_table(44, access, env)[:2] == bytes([6, 0])
