"""The meter's configuration: a TOML profile, then command-line overrides.

Example profile (every key optional; docs/meter.md lists them all)::

    ap_title = "2.16.124.113620.1.22.0.123.8437"
    serial_number = "00008437"
    listen = "127.0.0.1:1153"
    headend = "127.0.0.1:1154"
    relay = "127.0.0.1:1156"      # register through a C12.22 relay instead (docs/network.md)
    request_title = false         # with relay: register with the empty title, take the assigned one
    headend_ap_title = "2.16.124.113620.1.22.0.123.4"
    ihd = "127.0.0.1:1155"
    state_dir = "/var/lib/c1222-meter"
    speed = 1.0
    security_mode = 2
    key_id = 2
    keys = ["2:000102030405060708090A0B0C0D0E0F"]
    registration_period = 3600
    load_profile_minutes = 15
    front_end = "reference"       # or "sigma-delta"
    load = { type = "household", seed = 1 }
    max_connections = 256         # TCP connections at once; then the idlest is closed
    max_per_address = 64          # TCP connections at once from one IP address
    message_timeout = 30.0        # seconds from an APDU's first byte to its last
    idle_timeout = 300.0          # seconds a TCP connection may stay quiet
    replay_protection = "time"    # or "window" for peers whose IVs are not Unix time
    iv_tolerance = 900.0          # time mode: seconds an IV may differ from the meter's clock
    segment_size = 512            # largest APDU sent unsegmented (absent: never segment)
    max_apdu_size = 32767         # largest (reassembled) request taken, and response sent
    writable_tables = [5, 6, 7]   # standard tables a Full/Partial Write may change

    [[users]]
    user_id = 2
    password = "PASSWORD"
    groups = ["all"]

A bad profile raises :class:`~c1222.errors.ConfigurationError` naming the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from c1222 import limits
from c1222.codec.ber import Uid
from c1222.codec.segments import MIN_SEGMENT_SIZE
from c1222.codes import SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.errors import C1222Error, ConfigurationError
from c1222.tables import access
from c1222.tables.access import User
from c1222.transport.endpoint import Address, parse_address

#: Latest simulated clock start (2100-01-01): the meter's tables keep dates within 1970-2099.
MAX_START_TIME = 4_102_444_800.0
METER_AP_TITLE = "2.16.124.113620.1.22.0.123.8437"
HEADEND_AP_TITLE = "2.16.124.113620.1.22.0.123.4"

#: Group names a profile may give a user (Table 42 group bits).
GROUPS = {"read": access.GROUP_READ, "write": access.GROUP_WRITE,
          "procedure": access.GROUP_PROCEDURE, "control": access.GROUP_CONTROL,
          "all": access.GROUP_ALL}


@dataclass
class MeterConfig:
    ap_title: str = METER_AP_TITLE
    serial_number: str = "00008437"
    listen: Address = ("127.0.0.1", 1153)
    headend: Address | None = None
    headend_ap_title: str = HEADEND_AP_TITLE
    headend_transport: str = "tcp"
    #: A C12.22 relay to register through (instead of ``headend``): docs/network.md.
    relay: Address | None = None
    #: With ``relay``: register with the empty title (0D 00) and take the one assigned.
    request_title: bool = False
    #: With ``relay``: the master relay's title when known in advance, the called title of the
    #: first Register (else none until a Register answer names it; Wireshark cannot verify a
    #: secured message without a called title: c1222.md 5.2).
    master_ap_title: str | None = None
    ihd: Address | None = None
    ihd_ap_title: str | None = None
    state_dir: Path | None = None
    speed: float = 1.0
    security_mode: int = SecurityMode.CLEARTEXT
    key_id: int | None = None
    keys: KeyTable = field(default_factory=KeyTable)
    registration_period: int = 3600
    load_profile_minutes: int = 15
    front_end: str = "reference"
    # A Korean household: the day profile runs on local time (UTC+9).
    load: dict[str, Any] = field(default_factory=lambda: {"type": "household", "seed": 1,
                                                          "utc_offset": 32400})
    users: tuple[User, ...] | None = None  # None: the default users of the tables profile
    pcap: Path | None = None
    start_time: float | None = None  # simulated clock start (Unix time); None: now
    # Transport limits on hostile peers (EndpointLimits): TCP connections at once, seconds
    # from an APDU's first byte to its last, seconds a TCP connection may stay quiet.
    max_connections: int = 256
    max_per_address: int = 64
    message_timeout: float = 30.0
    idle_timeout: float = 300.0
    # Replay protection of secured requests (docs/security.md): "time" never serves a request
    # twice but needs IVs that are the sender's Unix time within iv_tolerance seconds;
    # "window" takes any IV but forgets a request after 15 minutes.
    replay_protection: str = "time"
    iv_tolerance: float = 900.0
    # Application-layer segmentation (docs/segmentation.md): the largest APDU sent unsegmented
    # (None: never segment) and the largest reassembled request taken / response sent.
    segment_size: int | None = None
    max_apdu_size: int = limits.DEFAULT_MAX_APDU_SIZE
    writable_tables: tuple[int, ...] | None = None  # None: the profile's (5, 6, 7)

    def validate(self) -> MeterConfig:
        _check_title("ap_title", self.ap_title)
        _check_title("headend_ap_title", self.headend_ap_title)
        if self.master_ap_title is not None:
            _check_title("master_ap_title", self.master_ap_title)
        if self.ihd_ap_title is not None:
            _check_title("ihd_ap_title", self.ihd_ap_title)
        if not self.serial_number or not self.serial_number.isascii():
            raise ConfigurationError("serial_number: one or more ASCII characters")
        if self.start_time is not None and not 0 <= self.start_time <= MAX_START_TIME:
            # nan fails this too; it would crash the clock later
            raise ConfigurationError(f"start_time: {self.start_time} is not Unix seconds in "
                                     f"0 .. {MAX_START_TIME:.0f}")
        if not 0 < self.speed <= 100_000:
            raise ConfigurationError(f"speed: {self.speed} is not in (0, 100000]")
        if self.security_mode not in (0, 1, 2):
            raise ConfigurationError(f"security_mode: {self.security_mode} is not 0, 1 or 2")
        if self.security_mode and self.key_id is None:
            ids = sorted(self.keys)
            if not ids:
                raise ConfigurationError("security_mode: a secured meter needs a key (keys)")
            self.key_id = ids[0]
        if self.key_id is not None and self.key_id not in self.keys:
            raise ConfigurationError(f"key_id: no key {self.key_id} in keys")
        if not 0 < self.registration_period < 1 << 24:
            raise ConfigurationError("registration_period: 1 .. 16777215 seconds")
        if self.load_profile_minutes not in (1, 2, 3, 5, 6, 10, 12, 15, 20, 30, 60):
            raise ConfigurationError("load_profile_minutes: must divide an hour")
        if self.front_end not in ("reference", "sigma-delta"):
            raise ConfigurationError(f"front_end: {self.front_end!r} is not reference or "
                                     "sigma-delta")
        if self.relay is not None and self.headend is not None:
            raise ConfigurationError("relay and headend: register through one or the other")
        if self.request_title and self.relay is None:
            raise ConfigurationError("request_title: only with relay (the relay's master "
                                     "relay assigns titles)")
        if self.headend_transport not in ("tcp", "udp"):
            raise ConfigurationError("headend_transport: tcp or udp")
        if not 1 <= self.max_connections <= 65535:
            raise ConfigurationError("max_connections: 1 .. 65535")
        if not 1 <= self.max_per_address <= 65535:
            raise ConfigurationError("max_per_address: 1 .. 65535")
        for name in ("message_timeout", "idle_timeout"):
            if not 0 < getattr(self, name) <= 86400:
                raise ConfigurationError(f"{name}: seconds in (0, 86400]")
        if self.replay_protection not in ("time", "window"):
            raise ConfigurationError("replay_protection: time or window")
        if not 1 <= self.iv_tolerance <= 86400:
            raise ConfigurationError("iv_tolerance: seconds in [1, 86400]")
        if self.segment_size is not None and not (
                MIN_SEGMENT_SIZE <= self.segment_size <= limits.MAX_APDU_SIZE):
            raise ConfigurationError(f"segment_size: {MIN_SEGMENT_SIZE} .. "
                                     f"{limits.MAX_APDU_SIZE} bytes")
        if not MIN_SEGMENT_SIZE <= self.max_apdu_size <= limits.MAX_APDU_SIZE:
            raise ConfigurationError(f"max_apdu_size: {MIN_SEGMENT_SIZE} .. "
                                     f"{limits.MAX_APDU_SIZE} bytes")
        if self.writable_tables is not None and not all(
                0 <= n <= 2039 for n in self.writable_tables):
            raise ConfigurationError("writable_tables: standard table numbers 0 .. 2039")
        if not isinstance(self.load, dict) or "type" not in self.load:
            raise ConfigurationError("load: a table with a `type`")
        return self


def _check_title(name: str, value: object) -> None:
    try:
        if not isinstance(value, str):
            raise ValueError
        Uid.parse(value)
    except (ValueError, C1222Error):
        raise ConfigurationError(f"{name}: {value!r} is not an AP title "
                                 "(dotted, e.g. 2.16.124.113620.1.22.0.123.8437)") from None


_ADDRESSES = ("listen", "headend", "ihd", "relay")
_PATHS = ("state_dir", "pcap")
_KNOWN = {f.name for f in fields(MeterConfig)}


def load_profile(path: str | Path) -> dict[str, Any]:
    """The raw TOML table of a profile file; ConfigurationError when unreadable."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigurationError(f"profile {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"profile {path}: {exc}") from None


def from_mapping(data: dict[str, Any], base: MeterConfig | None = None) -> MeterConfig:
    """A config from a profile table (keys as in the module docstring) over ``base``."""
    config = base or MeterConfig()
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KNOWN:
            raise ConfigurationError(f"{key}: not a meter profile field")
        if value is None:
            continue
        try:
            changes[key] = _convert(key, value)
        except ConfigurationError:
            raise
        except (TypeError, ValueError, C1222Error) as exc:
            raise ConfigurationError(f"{key}: {exc}") from None
    return replace(config, **changes).validate()


def _convert(key: str, value: Any) -> Any:
    if key in _ADDRESSES:
        if isinstance(value, tuple):  # already parsed by the command line
            return value
        if not isinstance(value, str):
            raise ConfigurationError(f"{key}: an address HOST:PORT")
        try:
            return parse_address(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{key}: {exc}") from None
    if key in _PATHS:
        return Path(str(value))
    if key == "keys":
        if not isinstance(value, list):
            raise ConfigurationError("keys: a list of \"ID:HEX\"")
        try:
            return KeyTable.from_cli(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"keys: {exc}") from None
    if key == "writable_tables":
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(n, int) and not isinstance(n, bool) for n in value):
            raise ConfigurationError("writable_tables: a list of table numbers")
        return tuple(value)
    if key == "users":
        return tuple(_user(i, u) for i, u in enumerate(value))
    if key == "load":
        if not isinstance(value, dict):
            raise ConfigurationError("load: a table, e.g. { type = \"household\", seed = 1 }")
        return dict(value)
    if key in ("speed", "message_timeout", "idle_timeout", "iv_tolerance"):
        return float(value)
    if key in ("security_mode", "key_id", "registration_period", "load_profile_minutes",
               "max_connections", "max_per_address", "segment_size", "max_apdu_size"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{key}: an integer")
        return value
    if key == "start_time":
        return float(value)
    if key == "request_title":
        if not isinstance(value, bool):
            raise ConfigurationError(f"{key}: true or false")
        return value
    if not isinstance(value, str):
        raise ConfigurationError(f"{key}: a string")
    return value


def _user(index: int, item: Any) -> User:
    where = f"users[{index}]"
    if not isinstance(item, dict):
        raise ConfigurationError(f"{where}: a table with user_id, password and groups")
    try:
        groups = 0
        for name in item.get("groups", ["read"]):
            if name not in GROUPS:
                raise ConfigurationError(f"{where}.groups: {name!r} is not one of "
                                         f"{', '.join(GROUPS)}")
            groups |= GROUPS[name]
        user_id = item["user_id"]
        if not isinstance(user_id, int) or not 0 <= user_id <= 0xFFFF:
            raise ConfigurationError(f"{where}.user_id: 0 .. 65535")
        return User(user_id, str(item["password"]).encode("latin-1"), groups,
                    str(item.get("name", "")))
    except KeyError as exc:
        raise ConfigurationError(f"{where}: {exc.args[0]} is missing") from None
