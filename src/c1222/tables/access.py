"""Access control in the style of decade 4 (docs/spec c1219 section 8).

Users have a password and a bitmap of access groups (Table 42); each table and each
procedure has the groups that may read it and the groups that may write or run it
(Table 44, TABLE_IDC_BFLD with FLAG1 "any user may read" and FLAG2 "any user may write").
Which tables may be read or written with no Logon/Security at all is a per-meter
setting (``public_read`` / ``public_write``). A refusal raises :class:`~c1222.errors.ISC`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, cast

from c1222.errors import ISC, ConfigurationError
from c1222.tables.decade4 import (
    AccessControl,
    AccessControlEntryRcd,
    PasswordEntryRcd,
    Security,
    SecurityLimitingRcd,
    TableIdcBfld,
)

#: C12.18/C12.22 Security-service passwords are 20 bytes, space padded (c1222 digest, Example 8).
PASSWORD_LEN: Final = 20
#: Procedure keys: standard procedure n is n, manufacturer procedure n is MFG_PROC_BASE + n.
MFG_PROC_BASE: Final = 2048

# Access groups used by the default profile (bits of the Table 42 ACCESS_PERMISSION byte).
GROUP_READ: Final = 0x01
GROUP_WRITE: Final = 0x02
GROUP_PROCEDURE: Final = 0x04
GROUP_CONTROL: Final = 0x08
GROUP_ALL: Final = 0xFF


def pad_password(password: bytes | str) -> bytes:
    """A password as the Security service carries it: 20 bytes, padded with spaces."""
    raw = password.encode("latin-1") if isinstance(password, str) else bytes(password)
    if len(raw) > PASSWORD_LEN:
        raise ConfigurationError(f"password longer than {PASSWORD_LEN} bytes")
    return raw.ljust(PASSWORD_LEN, b" ")


@dataclass(frozen=True)
class Principal:
    """Who is asking: a logged-on user (with the groups their password opened)."""

    user_id: int
    groups: int


@dataclass(frozen=True)
class User:
    """One Table 42 entry with its user id (the Logon / Security service user-id)."""

    user_id: int
    #: Given as bytes or str (Latin-1); kept as the 20 padded bytes (:func:`pad_password`).
    password: bytes | str
    groups: int
    name: str = ""
    #: Made once: what a Security service with this user's password yields.
    principal: Principal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "password", pad_password(self.password))
        object.__setattr__(self, "principal", Principal(self.user_id, self.groups))

    def __repr__(self) -> str:  # never print a password
        return f"User(user_id={self.user_id}, groups={self.groups:#04x}, name={self.name!r})"


@dataclass(frozen=True)
class Permission:
    """The Table 44 entry of one table or procedure."""

    read_groups: int = 0
    write_groups: int = 0
    any_user_read: bool = False  # FLAG1
    any_user_write: bool = False  # FLAG2


@dataclass(frozen=True)
class AccessPolicy:
    """Users, per-table and per-procedure permissions, and the no-logon sets.

    ``principal=None`` in the checks means "no Logon/Security done": only the public
    sets apply. Tables and procedures without an entry fall back to ``default``.
    """

    users: tuple[User, ...] = ()
    tables: Mapping[int, Permission] = field(default_factory=dict)
    procedures: Mapping[int, Permission] = field(default_factory=dict)
    default: Permission = Permission(read_groups=GROUP_ALL)
    public_read: frozenset[int] = frozenset()
    public_write: frozenset[int] = frozenset()

    # ------------------------------------------------------------------ users

    def authenticate(self, user_id: int, password: bytes | str) -> Principal:
        """The principal for a Security service (user-id, password), or :class:`ISC`."""
        if isinstance(password, bytes) and len(password) == PASSWORD_LEN:
            given = password  # as the Security service carries it: already padded
        else:
            given = pad_password(password) if len(password) <= PASSWORD_LEN else b""
        for user in self.users:
            # compare_digest: the time taken does not tell how much of a password matched.
            if user.user_id == user_id and hmac.compare_digest(cast(bytes, user.password), given):
                return user.principal
        raise ISC("password not accepted")

    def principal(self, user_id: int) -> Principal:
        """The principal for a user authenticated by other means (a C12.22 key)."""
        for user in self.users:
            if user.user_id == user_id:
                return user.principal
        raise ISC(f"unknown user {user_id}")

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _allowed(perm: Permission, principal: Principal, write: bool) -> bool:
        if write:
            return perm.any_user_write or bool(perm.write_groups & principal.groups)
        return perm.any_user_read or bool(perm.read_groups & principal.groups)

    def may_access_table(self, table: int, principal: Principal | None, *, write: bool) -> bool:
        if table in (self.public_write if write else self.public_read):
            return True
        if principal is None:
            return False
        return self._allowed(self.tables.get(table, self.default), principal, write)

    def check_table(self, table: int, principal: Principal | None, *, write: bool) -> None:
        """Raise :class:`ISC` unless ``principal`` may read (or write) ``table``."""
        if not self.may_access_table(table, principal, write=write):
            raise ISC(f"{'write' if write else 'read'} of table {table} not permitted")

    def may_run_procedure(self, proc_key: int, principal: Principal | None) -> bool:
        """Running a procedure needs write rights on it (Table 44 WRITE_ACCESS)."""
        perm = self.procedures.get(proc_key)
        if perm is None:
            return principal is not None and bool(self.default.write_groups & principal.groups)
        if principal is None:
            return False  # procedures always need a Logon/Security
        return self._allowed(perm, principal, write=True)

    # ------------------------------------------------------------------ decade 4 export

    def to_tables(self) -> tuple[SecurityLimitingRcd, Security, AccessControl]:
        """Tables 41, 42 and 44 describing this policy (for a head-end or a dump)."""
        entries = [
            AccessControlEntryRcd(
                TableIdcBfld(tbl_proc_nbr=key % MFG_PROC_BASE, std_vs_mfg_flag=key >= MFG_PROC_BASE,
                             proc_flag=is_proc, flag1=p.any_user_read, flag2=p.any_user_write),
                p.read_groups, p.write_groups)
            for is_proc, items in ((False, self.tables), (True, self.procedures))
            for key, p in sorted(items.items())
        ]
        limits = SecurityLimitingRcd(nbr_passwords=len(self.users), password_len=PASSWORD_LEN,
                                     nbr_keys=0, key_len=0, nbr_perm_used=len(entries))
        security = Security(tuple(PasswordEntryRcd(cast(bytes, u.password), u.groups) for u in self.users))
        return limits, security, AccessControl(tuple(entries))


def permissions(items: Iterable[int], perm: Permission) -> dict[int, Permission]:
    """The same permission for several tables or procedures."""
    return {k: perm for k in items}


__all__ = [
    "PASSWORD_LEN", "MFG_PROC_BASE", "GROUP_READ", "GROUP_WRITE", "GROUP_PROCEDURE",
    "GROUP_CONTROL", "GROUP_ALL", "pad_password", "User", "Permission", "Principal",
    "AccessPolicy", "permissions",
]
