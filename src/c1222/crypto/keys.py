"""The key table: key id (0-255) -> AES-128 key (C12.22 digest 2.4, 5.1 and 11).

A key id selects an entry of C12.19 Table 45/46 on the target; the AC element carries it
next to the IV. One file format serves this project and Wireshark/tshark: Wireshark's
``c1222_decryption_table`` UAT file, one entry per line::

    # comment
    "2",01020304050607080102030405060708
    "10",000102030405060708090a0b0c0d0e0f

The quoted key id is **hexadecimal** there (``"10"`` is key id 16, digest 11); the key is 32
hex digits, unquoted. On the command line the form is ``ID:HEX`` with a *decimal* id.

Key bytes never appear in a ``repr``, ``str`` or error message. File errors name the line
number but never echo the line, because a misplaced key could be anywhere in it.

**Per-node keys derived from a master** (docs/fleet.md, "Keys"): a key id may hold a master
secret instead of a key (:meth:`KeyTable.set_master`); the key for a node is then derived from
the master and the node's AP title, so the fleet (``c1222 fleet --master-key``) and the
head-end (``c1222 headend --master-key``) agree with no key list between them::

    key(title) = HMAC-SHA256(master, b"c1222-fleet-key/" + absolute dotted title)[:16]

This module is the one place of that derivation (:func:`derive_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final, NoReturn

from c1222.codec.ber import Uid
from c1222.crypto.eax_prime import KEY_SIZE, BytesLike, EaxPrime
from c1222.errors import ConfigurationError, SecurityError

__all__ = [
    "DERIVED_KEY_LABEL",
    "MAX_DERIVED_CIPHERS",
    "MAX_KEY_FILE_SIZE",
    "MAX_KEY_ID",
    "TSHARK_UAT_NAME",
    "KeyTable",
    "derive_key",
    "parse_key_spec",
]

#: Key ids are one byte (AC key-id-element, digest 2.4).
MAX_KEY_ID: Final = 0xFF
#: A key file larger than this is refused before it is read (architecture rule 3).
MAX_KEY_FILE_SIZE: Final = 1024 * 1024
#: Name of Wireshark's C12.22 key table (a UAT) in profiles and in ``-o uat:`` options.
TSHARK_UAT_NAME: Final = "c1222_decryption_table"

# One Wireshark UAT record: "hex id",32 hex digits; blanks around the fields are tolerated.
_UAT_LINE: Final = re.compile(r'\s*"([0-9A-Fa-f]{1,8})"\s*,\s*([0-9A-Fa-f]{32})\s*')
_CLI_SPEC: Final = re.compile(r"\s*([0-9]{1,3})\s*:\s*([0-9A-Fa-f]{32})\s*")
_CLI_FORM: Final = "expected ID:HEX with a decimal key id 0-255 and 32 hex digits"

#: The HMAC label of per-node keys (the module docstring); changing it changes every key.
DERIVED_KEY_LABEL: Final = b"c1222-fleet-key/"
#: Derived ciphers a table keeps (least recently used dropped first): a head-end of 1,000,000
#: meters re-derives (HMAC + EAX' subkeys, tens of microseconds) rather than hold them all.
MAX_DERIVED_CIPHERS: Final = 16_384


def derive_key(master: BytesLike, ap_title: Uid) -> bytes:
    """The 16-byte AES key of the node titled ``ap_title`` under ``master`` (a relative title
    is taken in its absolute form, so ``.123.100000`` and ``2.16.124.113620.1.22.0.123.100000``
    get the same key)."""
    master = bytes(master)
    if len(master) != KEY_SIZE:
        raise ValueError(f"master: {KEY_SIZE} bytes (an AES-128 key)")
    text = str(ap_title.absolute()).encode("ascii")
    return hmac.new(master, DERIVED_KEY_LABEL + text, hashlib.sha256).digest()[:KEY_SIZE]


def _check_key_id(key_id: object) -> int:
    # ``object``, not ``int``: compiled with mypyc, an ``int`` parameter turns True into 1.
    if isinstance(key_id, bool) or not isinstance(key_id, int) or not 0 <= key_id <= MAX_KEY_ID:
        raise ConfigurationError(f"key id must be an integer 0-{MAX_KEY_ID}")
    return key_id


def _check_key(key: BytesLike) -> bytes:
    key = bytes(key)
    if len(key) != KEY_SIZE:
        raise ConfigurationError(f"key must be {KEY_SIZE} bytes (AES-128), got {len(key)}")
    return key


def parse_key_spec(spec: str) -> tuple[int, bytes]:
    """Parse one command-line key ``ID:HEX`` (decimal id, 32 hex digits), e.g. ``2:0102…``.

    A malformed value raises ConfigurationError; the message does not repeat the value.
    """
    match = _CLI_SPEC.fullmatch(spec)
    if match is None:
        raise ConfigurationError(f"bad --key value: {_CLI_FORM}")
    key_id = int(match.group(1))
    if key_id > MAX_KEY_ID:
        raise ConfigurationError(f"bad --key value: {_CLI_FORM}")
    return key_id, bytes.fromhex(match.group(2))


class KeyTable:
    """Key id -> 16-byte key, with one cached :class:`EaxPrime` per key id.

    :meth:`cipher` is what the security policy calls: it raises SecurityError (generic
    message) for an unknown key id, so a peer probing key ids learns nothing more than
    from a bad MAC.
    """

    __slots__ = ("_ciphers", "_derived", "_keys", "_masters")

    def __init__(self, keys: Mapping[int, bytes] | Iterable[tuple[int, bytes]] = ()) -> None:
        self._keys: dict[int, bytes] = {}
        self._ciphers: dict[int, EaxPrime] = {}
        self._masters: dict[int, bytes] = {}
        self._derived: OrderedDict[tuple[int, Uid], EaxPrime] = OrderedDict()
        items = keys.items() if isinstance(keys, Mapping) else keys
        for key_id, key in items:
            self.set(key_id, key)

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_cli(cls, specs: Iterable[str]) -> KeyTable:
        """Build a table from ``--key ID:HEX`` values (decimal ids); a later id wins."""
        table = cls()
        for key_id, key in map(parse_key_spec, specs):
            table.set(key_id, key)
        return table

    @classmethod
    def from_wireshark_text(cls, text: str, source: str = "key file") -> KeyTable:
        """Parse Wireshark's key table text (hex ids; blank lines and ``#`` comments allowed).

        A malformed line, an id over 0xFF or a repeated id raises ConfigurationError naming
        ``source`` and the line number, without the line's content.
        """
        table = cls()
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            match = _UAT_LINE.fullmatch(line)
            if match is None:
                raise ConfigurationError(
                    f'{source} line {number}: expected "HEX-ID",<32 hex digits>'
                )
            key_id = int(match.group(1), 16)
            if key_id > MAX_KEY_ID:
                raise ConfigurationError(f"{source} line {number}: key id must be 00-ff (hex)")
            if key_id in table:
                # Two keys for one id: which one Wireshark would pick is not ours to guess.
                raise ConfigurationError(f"{source} line {number}: key id {key_id} repeated")
            table.set(key_id, bytes.fromhex(match.group(2)))
        return table

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeyTable:
        """Read a Wireshark-format key file (see :meth:`from_wireshark_text`)."""
        path = Path(path)
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_KEY_FILE_SIZE + 1)
        except OSError as exc:
            raise ConfigurationError(f"cannot read key file {path}: {exc.strerror}") from None
        if len(raw) > MAX_KEY_FILE_SIZE:
            raise ConfigurationError(f"key file {path} is larger than {MAX_KEY_FILE_SIZE} bytes")
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.isascii():
                raise ConfigurationError(f"key file {path} line {number}: not ASCII text")
        return cls.from_wireshark_text(raw.decode("ascii"), source=f"key file {path}")

    # -- access -----------------------------------------------------------------------

    def set(self, key_id: object, key: BytesLike) -> None:
        """Add or replace the key for ``key_id`` (drops its cached cipher)."""
        key_id = _check_key_id(key_id)
        key = _check_key(key)
        self.discard(key_id)
        self._keys[key_id] = key

    def set_master(self, key_id: object, master: BytesLike) -> None:
        """Make ``key_id`` a master: each node's key is :func:`derive_key` of it and the node's
        AP title (the calling title of what a node sends, the called title of what we send)."""
        key_id = _check_key_id(key_id)
        master = _check_key(master)
        self.discard(key_id)
        self._masters[key_id] = master

    def is_master(self, key_id: int) -> bool:
        """Whether ``key_id`` derives per-node keys (:meth:`set_master`)."""
        return key_id in self._masters

    def discard(self, key_id: int) -> None:
        """Remove ``key_id`` (a key or a master) if present."""
        self._keys.pop(key_id, None)
        self._ciphers.pop(key_id, None)
        if self._masters.pop(key_id, None) is not None:
            for entry in [e for e in self._derived if e[0] == key_id]:
                del self._derived[entry]

    def update(self, other: KeyTable) -> None:
        """Copy every entry of ``other`` into this table (``other`` wins), e.g. CLI over file."""
        for key_id in other.key_ids():
            if other.is_master(key_id):
                self.set_master(key_id, other._masters[key_id])
            else:
                self.set(key_id, other.key(key_id))

    def key(self, key_id: object, ap_title: Uid | None = None) -> bytes:
        """The raw key for ``key_id`` (for a master: the key derived for ``ap_title``);
        SecurityError (generic) when there is none, or a master is asked with no title."""
        if not isinstance(key_id, int):  # a peer's id of any type: unknown like any other
            raise SecurityError()
        found = self._keys.get(key_id)
        master = self._masters.get(key_id) if found is None else None
        if found is not None:
            return found
        if master is None or ap_title is None:
            raise SecurityError()
        return derive_key(master, ap_title)

    def cipher(self, key_id: object, ap_title: Uid | None = None) -> EaxPrime:
        """The :class:`EaxPrime` for ``key_id``, built once and cached; for a master, the
        cipher of the key derived for ``ap_title`` (the last :data:`MAX_DERIVED_CIPHERS` kept).

        Unknown key id, or a master without a title -> SecurityError with the generic message.
        """
        if not isinstance(key_id, int):  # a peer's id of any type: unknown like any other
            raise SecurityError()
        cipher = self._ciphers.get(key_id)
        derives = cipher is None and key_id in self._masters
        if cipher is not None:
            return cipher
        if not derives:
            cipher = self._ciphers[key_id] = EaxPrime(self.key(key_id))
            return cipher
        if ap_title is None:
            raise SecurityError()
        entry = (key_id, ap_title.absolute())
        cipher = self._derived.get(entry)
        if cipher is None:
            cipher = EaxPrime(self.key(key_id, ap_title))
            self._derived[entry] = cipher
            if len(self._derived) > MAX_DERIVED_CIPHERS:
                self._derived.popitem(last=False)
        else:
            self._derived.move_to_end(entry)
        return cipher

    def key_ids(self) -> list[int]:
        """The key ids present (keys and masters), ascending."""
        return sorted((*self._keys, *self._masters))

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys or key_id in self._masters

    def __len__(self) -> int:
        return len(self._keys) + len(self._masters)

    def __iter__(self) -> Iterator[int]:
        return iter(self.key_ids())

    def __repr__(self) -> str:
        masters = sorted(self._masters)
        return (f"KeyTable(key_ids={self.key_ids()}"
                + (f", masters={masters})" if masters else ")"))

    def __str__(self) -> str:  # a def, not ``__str__ = __repr__``: mypyc cannot alias methods
        return self.__repr__()

    def __reduce__(self) -> NoReturn:
        raise TypeError("KeyTable objects hold key material and cannot be pickled")

    # -- export -----------------------------------------------------------------------

    def to_wireshark_text(self) -> str:
        """This table in Wireshark's ``c1222_decryption_table`` format (hex ids)."""
        lines = ["# C12.22 keys: \"key id in hex\",key (Wireshark c1222_decryption_table)"]
        # a master has no one key to write: Wireshark derives nothing
        lines += [f'"{key_id:x}",{self._keys[key_id].hex()}' for key_id in sorted(self._keys)]
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_wireshark_text` to ``path``; a new file is created mode 0600.

        Copy or point Wireshark's profile file ``c1222_decryption_table`` at it.
        """
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii", newline="\n") as f:
                f.write(self.to_wireshark_text())
        except OSError as exc:
            raise ConfigurationError(f"cannot write key file {path}: {exc.strerror}") from None

    def tshark_options(self) -> list[str]:
        """``["-o", 'uat:c1222_decryption_table:"2",0102…', …]`` — argv items for tshark.

        One ``-o`` per key (tshark accumulates them, digest 11). The result *contains key
        bytes*: pass it as an argument list, never log it.
        """
        options: list[str] = []
        for key_id in sorted(self._keys):
            options += ["-o", f'uat:{TSHARK_UAT_NAME}:"{key_id:x}",{self._keys[key_id].hex()}']
        return options
