"""Decade 4: security, tables 40-45 (docs/spec c1219 section 8).

These layouts let a head-end decode a meter's security tables and let
:class:`~c1222.tables.access.AccessPolicy` export its users and permissions in the
standard's shape. The meter never serves them in clear (section 8).
"""

from __future__ import annotations

from c1222.tables.engine import UINT8, UINT16, Binary, bitfield, bits, fld, flag, record


@record
class SecurityLimitingRcd:
    """Tables 40 DIM_SECURITY_LIMITING_TBL and 41 ACT_SECURITY_LIMITING_TBL, 6 bytes."""

    nbr_passwords: int = fld(UINT8)
    password_len: int = fld(UINT8)
    nbr_keys: int = fld(UINT8)
    key_len: int = fld(UINT8)
    nbr_perm_used: int = fld(UINT16)


def _st41(s) -> SecurityLimitingRcd:
    return s.tbl(41)


@record
class PasswordEntryRcd:
    """One Table 42 entry: a password and the access groups (a bitmap) it opens."""

    password: bytes = fld(Binary(lambda s: _st41(s).password_len))
    access_permission: int = fld(UINT8)


@record
class Security:
    """Table 42 SECURITY_TBL: NBR_PASSWORDS entries."""

    passwords: tuple[PasswordEntryRcd, ...] = fld(
        PasswordEntryRcd, count=lambda s: _st41(s).nbr_passwords)


@bitfield(2)
class TableIdcBfld:
    """TABLE_IDC_BFLD (section 3.6): a table or procedure number with its flags.

    FLAG1 / FLAG2 mean "any user may read / write" (TERM-SEC).
    """

    tbl_proc_nbr: int = bits(0, 10)
    std_vs_mfg_flag: bool = flag(11)
    proc_flag: bool = flag(12)
    flag1: bool = flag(13)
    flag2: bool = flag(14)
    flag3: bool = flag(15)


@record
class AccessControlEntryRcd:
    """One Table 44 entry: the groups allowed to read and to write (or run) one item."""

    table_or_proc: TableIdcBfld = fld(TableIdcBfld)
    read_access: int = fld(UINT8)
    write_access: int = fld(UINT8)


@record
class AccessControl:
    """Table 44 ACCESS_CONTROL_TBL: NBR_PERM_USED entries."""

    entries: tuple[AccessControlEntryRcd, ...] = fld(
        AccessControlEntryRcd, count=lambda s: _st41(s).nbr_perm_used)


@record
class Key:
    """Table 45 KEY_TBL: NBR_KEYS keys of KEY_LEN bytes."""

    keys: tuple[bytes, ...] = fld(Binary(lambda s: _st41(s).key_len),
                                  count=lambda s: _st41(s).nbr_keys)


__all__ = [
    "SecurityLimitingRcd", "PasswordEntryRcd", "Security", "TableIdcBfld",
    "AccessControlEntryRcd", "AccessControl", "Key",
]
