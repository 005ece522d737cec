"""The option types every command shares, so a bad value gets one clear message, checked by
click before a command starts anything (no socket, no child process, no file written).

Each type hands the command the value it already uses (a string, a float, an address tuple):
the checks here only refuse; the layers below still own the meaning of the value.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import re
import socket
import tempfile
import zoneinfo
from pathlib import Path
from typing import Any

import click

from c1222.codec.ber import Uid
from c1222.codec.segments import MIN_SEGMENT_SIZE
from c1222.codes import C1222_PORT
from c1222.crypto.keys import MAX_KEY_ID, KeyTable, parse_key_spec
from c1222.errors import C1222Error, ConfigurationError
from c1222.limits import MAX_APDU_SIZE
from c1222.tables.access import PASSWORD_LEN
from c1222.transport.endpoint import Address, parse_address

#: Largest profile, tariff or other small input file read whole (a profile is a few KiB;
#: /dev/zero must not be read until memory runs out).
MAX_INPUT_FILE = 1024 * 1024

#: Longest value echoed whole in an error line (a 10 000-character argument stays one short line).
_ECHO = 60


def shown(text: str) -> str:
    """``text`` quoted for an error message, cut short if long."""
    return repr(text) if len(text) <= _ECHO else repr(text[:_ECHO]) + f"... ({len(text)} chars)"


_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*\.?")


class AddressType(click.ParamType):
    """``HOST:PORT`` (``[v6]:PORT``, ``HOST``, ``:PORT``) -> ``(host, port)``.

    ``listen``: an address of this machine to listen on — port 0 allowed, the host must resolve,
    and the port must be free now (``udp`` too for the C12.22 ports), so a port in use is a
    usage error naming the option, whichever port it is. Otherwise a peer's address: port 0 is
    refused, the host is only checked for shape (a name may resolve later, the node retries).
    """

    name = "HOST:PORT"

    def __init__(self, default_port: int = C1222_PORT, *, listen: bool = False,
                 udp: bool = True, check_free: bool = True) -> None:
        self.default_port = default_port
        self.listen = listen
        self.udp = udp
        self.check_free = check_free

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Address:
        if isinstance(value, tuple):
            return value  # type: ignore[return-value]
        text = str(value)
        if len(text) > 300:  # parse_address would echo it whole
            self.fail(f"{shown(text)} is not HOST:PORT", param, ctx)
        try:
            host, port = parse_address(text, self.default_port)
        except ConfigurationError as exc:
            self.fail(f"{exc} (use HOST:PORT)", param, ctx)
        if not _host_shape_ok(host):
            self.fail(f"{shown(host)} is not a host name or IP address", param, ctx)
        if not self.listen:
            if port == 0:
                self.fail(f"{shown(text)}: port 0 only means 'any port' when listening", param, ctx)
            return host, port
        message = bind_problem((host, port), udp=self.udp, bind=self.check_free)
        if message:
            self.fail(message, param, ctx)
        return host, port


def _host_shape_ok(host: str) -> bool:
    if ":" in host:  # only a bracketed IPv6 literal gets here with a colon
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    if re.fullmatch(r"[0-9.]+", host):  # all digits: must be a real IPv4 address
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None


def bind_problem(address: Address, *, udp: bool = True, bind: bool = True) -> str | None:
    """Why ``address`` cannot be listened on now (None when it can; port 0 always can).
    Without ``bind``, only that its host is an address of this machine.

    Binds and releases a socket the way asyncio and uvicorn bind theirs (SO_REUSEADDR), so a
    port only in TIME_WAIT is not reported. The same words for every port of every command.
    """
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "bad host name"
        return f"cannot listen on {host}:{port}: {reason or exc}"
    family, _, _, _, sockaddr = infos[0]
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    if port == 0 or not bind:
        # any port: only the host matters (a bind to port 0 tells whether it is ours)
        kinds, sockaddr = kinds[:1], (sockaddr[0], 0, *sockaddr[2:])
    for kind in kinds:
        with socket.socket(family, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                return port_problem(host, port, exc)
    return None


def port_problem(host: str, port: int, exc: OSError) -> str:
    """The one message for a listening address that cannot be bound."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use (on {host}); pick another or stop what holds it"
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges on {host}; pick one above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


class KeyType(click.ParamType):
    """``ID:HEX`` (decimal key id 0-255, 32 hex digits); the value is never echoed back."""

    name = "ID:HEX"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            parse_key_spec(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc).removeprefix("bad --key value: "), param, ctx)
        return str(value)


def key_table(keys: tuple[str, ...]) -> KeyTable:
    """The table of ``--key`` values that :class:`KeyType` checked."""
    return KeyTable.from_cli(keys)


def add_master_keys(keys: KeyTable, masters: tuple[str, ...]) -> None:
    """Add ``--master-key`` values (checked by :class:`KeyType`) as masters of per-node keys;
    an id that is also a ``--key``, or given twice, is a UsageError."""
    for key_id, secret in map(parse_key_spec, masters):
        if key_id in keys:
            raise click.BadParameter(f"key id {key_id} is given twice (--key or --master-key)",
                                     param_hint="'--master-key'")
        keys.set_master(key_id, secret)


def check_keys(keys: KeyTable, key_id: int | None, security_mode: int, *,
               what: str) -> None:
    """A secured mode needs a key, and ``--key-id`` one of the keys (UsageError otherwise)."""
    if key_id is not None and key_id not in keys:
        raise click.BadParameter(f"no --key with id {key_id}", param_hint="'--key-id'")
    if security_mode and not len(keys):
        raise click.BadParameter(f"a {what} in security mode {security_mode} needs a --key",
                                 param_hint="'--security-mode'")


class PasswordType(click.ParamType):
    """A C12.19 password: at most 20 bytes of Latin-1 (the Security and Logon services pad it
    with spaces); a longer one would make every request fail the meter's check."""

    name = "TEXT"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value)
        try:
            size = len(text.encode("latin-1"))
        except UnicodeEncodeError:
            self.fail("must be Latin-1 text (one byte a character)", param, ctx)
        if size > PASSWORD_LEN:
            self.fail(f"is {size} bytes, longer than {PASSWORD_LEN}: a C12.19 password "
                      f"has at most {PASSWORD_LEN}", param, ctx)
        return text


class FiniteRange(click.FloatRange):
    """click's FloatRange that also refuses nan and inf (nan passes every comparison)."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def seconds(minimum: float = 0.0, maximum: float = 366 * 86400.0, *,
            zero: bool = False) -> FiniteRange:
    """A duration in seconds: finite, at least ``minimum`` (0 itself only when ``zero``)."""
    if zero:
        return FiniteRange(min=0.0, max=maximum)
    return FiniteRange(min=minimum, max=maximum, min_open=minimum == 0.0)


#: Simulated seconds per real second (the meter's clock).
SPEED = FiniteRange(min=0.0, max=100_000.0, min_open=True)


class ApTitleType(click.ParamType):
    """A dotted AP title (``2.16.124.113620.1.22.0.123.8437``, or ``.123.8437`` relative)."""

    name = "OID"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value)
        try:
            Uid.parse(text)
        except (ValueError, C1222Error):
            self.fail(f"{shown(text)} is not an AP title (dotted, e.g. "
                      "2.16.124.113620.1.22.0.123.8437)", param, ctx)
        if not text.strip(".").replace(".", ""):
            self.fail(f"{shown(text)} is not an AP title (it has no arcs)", param, ctx)
        return text


class TimeZoneType(click.ParamType):
    """An IANA time zone name (``Asia/Seoul``)."""

    name = "ZONE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value)
        try:
            zoneinfo.ZoneInfo(text)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            self.fail(f"{shown(text)} is not a time zone (an IANA name such as Asia/Seoul)",
                      param, ctx)
        return text


class OutputDir(click.ParamType):
    """A directory to write in: refused if it is a file, or if it (or, when missing, the
    nearest folder above it, where it would be created) does not take a new file. Nothing is
    created here: the command makes the directory once every option is good."""

    name = "DIRECTORY"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Path:
        path = Path(value)
        if path.exists() and not path.is_dir():
            self.fail(f"{str(path)!r} is not a directory", param, ctx)
        existing = path.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            self.fail(f"{str(existing)!r} is not a directory", param, ctx)
        try:
            # Try it rather than trust os.access: root passes access() on /proc or a
            # read-only mount.
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            self.fail(f"cannot write in {str(existing)!r}: {exc.strerror or exc}", param, ctx)
        return path


class OutputFile(click.ParamType):
    """A file to write (a capture, a report): its folder must exist and take a new file."""

    name = "FILE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        path = Path(value)
        if path.is_dir():
            self.fail(f"{str(path)!r} is a directory", param, ctx)
        folder = path.parent
        if not folder.is_dir():
            self.fail(f"folder {str(folder)!r} does not exist", param, ctx)
        try:
            if path.exists():
                with open(path, "ab"):  # appending nothing leaves it as it is
                    pass
            else:
                with open(path, "xb"):
                    pass
                path.unlink()
        except OSError as exc:
            self.fail(f"cannot write {str(path)!r}: {exc.strerror or exc}", param, ctx)
        return str(value)


class InputFile(click.ParamType):
    """A small regular file to read whole (a profile, a tariff): not a directory, not a device
    or pipe that never ends, at most MAX_INPUT_FILE bytes."""

    name = "FILE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Path:
        path = Path(value)
        try:
            info = path.stat()
            if path.is_dir():
                self.fail(f"{str(path)!r} is a directory", param, ctx)
            if not path.is_file():
                self.fail(f"{str(path)!r} is not a regular file", param, ctx)
            if info.st_size > MAX_INPUT_FILE:
                self.fail(f"{str(path)!r} is {info.st_size} bytes; at most "
                          f"{MAX_INPUT_FILE} are read", param, ctx)
            with open(path, "rb"):
                pass
        except OSError as exc:
            self.fail(f"cannot read {str(path)!r}: {exc.strerror or exc}", param, ctx)
        return path


class DatabaseUrlType(click.ParamType):
    """``sqlite:///FILE``, a file path, or ``postgresql://...``: the shape is checked here and,
    for SQLite, that the file's folder exists; reaching PostgreSQL is left to the start."""

    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value).strip()
        scheme, sep, rest = text.partition("://")
        if not text:
            self.fail("empty database URL", param, ctx)
        if sep and scheme in ("postgresql", "postgres"):
            return text
        if sep and scheme != "sqlite":
            self.fail(f"unsupported database {scheme}://: use sqlite:///FILE or "
                      "postgresql://USER@HOST/DB", param, ctx)
        path = rest if sep else text
        if path == ":memory:":
            return text
        file = Path(path)
        if file.is_dir():
            self.fail(f"{path!r} is a directory", param, ctx)
        if not file.parent.is_dir():
            self.fail(f"folder {str(file.parent)!r} does not exist", param, ctx)
        return text


class MqttUrlType(click.ParamType):
    """``mqtt://[USER[:PASSWORD]@]HOST[:PORT]`` or ``mqtts://...`` -> ``MqttSettings``
    (``c1222.ihd.mqtt``). The URL is never echoed: it may hold a password."""

    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from c1222.ihd.mqtt import MqttSettings, parse_url

        if isinstance(value, MqttSettings):
            return value
        try:
            settings = parse_url(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)
        if not _host_shape_ok(settings.host):
            self.fail(f"{shown(settings.host)} is not a host name or IP address", param, ctx)
        return settings


class MqttNameType(click.ParamType):
    """A discovery prefix (``homeassistant``) or, with ``node=True``, a node id."""

    def __init__(self, node: bool = False) -> None:
        self.node = node
        self.name = "ID" if node else "TOPIC"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        from c1222.ihd.mqtt import check_node_id, check_prefix

        text = str(value)
        try:
            return check_node_id(text) if self.node else check_prefix(text)
        except ConfigurationError as exc:
            self.fail(f"{shown(text)}: {exc}", param, ctx)


class NatsUrlType(click.ParamType):
    """``nats://HOST:PORT[?stream=NAME&prefix=A.B]``, checked here (reaching NATS is left to
    the run: a head-end publishes whenever NATS is there)."""

    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from c1222.headend.stream import NatsTarget, parse_nats_url

        if isinstance(value, NatsTarget):
            return value
        try:
            return parse_nats_url(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)


def table_number(text: str, hint: str = "TABLE") -> int:
    """``23``, ``ST23`` or ``MT0`` (= 2048) -> the package's table number, 0 .. 4095."""
    from c1222.tables.registry import MFG_BASE

    t = text.strip().upper()
    base, digits = ((MFG_BASE, t[2:]) if t.startswith("MT")
                    else (0, t[2:]) if t.startswith("ST") else (0, t))
    try:
        number = int(digits, 0)
    except ValueError:
        raise click.BadParameter(f"{shown(text)} is not a table number (23, ST23 or MT0)",
                                 param_hint=hint) from None
    if not 0 <= number < MFG_BASE:
        raise click.BadParameter(f"{shown(text)}: table numbers are 0 .. {MFG_BASE - 1} "
                                 "(ST0 .. ST2047, MT0 .. MT2047)", param_hint=hint)
    return base + number


KEY = KeyType()
KEY_ID = click.IntRange(0, MAX_KEY_ID)
PASSWORD = PasswordType()
AP_TITLE = ApTitleType()
TIME_ZONE = TimeZoneType()
USER_ID = click.IntRange(0, 0xFFFF)
SECURITY_MODE = click.IntRange(0, 2)
MQTT_URL = MqttUrlType()
MQTT_PREFIX = MqttNameType()
MQTT_NODE_ID = MqttNameType(node=True)

#: --segment-size and --max-apdu-size of every node (docs/segmentation.md).
SEGMENT_SIZE = click.IntRange(MIN_SEGMENT_SIZE, MAX_APDU_SIZE)
APDU_SIZE = click.IntRange(MIN_SEGMENT_SIZE, MAX_APDU_SIZE)
SEGMENT_SIZE_HELP = ("largest APDU sent unsegmented on each link; larger ones go as segments "
                     "[never segment]")
APDU_SIZE_HELP = "largest reassembled APDU accepted (RQTL beyond)"


def checked(check: click.ParamType, value: Any, hint: str) -> Any:
    """``check`` applied to a value that came from elsewhere (a profile), its refusal naming
    where the value came from."""
    try:
        return check.convert(value, None, None)
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint=hint) from None


def listening_socket(address: Address, hint: str) -> socket.socket:
    """A TCP socket bound to ``address`` for a web server to serve on, so a port taken since
    the option was checked still gets the one message (uvicorn would exit on its own)."""
    host, port = address
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise click.BadParameter(f"cannot listen on {host}:{port}: {exc}",
                                 param_hint=hint) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise click.BadParameter(port_problem(host, port, exc), param_hint=hint) from None
    sock.set_inheritable(True)
    return sock
