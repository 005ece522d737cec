"""`c1222 decode` and `c1222 encode`: messages between bytes and their canonical JSON form."""

from __future__ import annotations

import gc
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import click
import msgspec

from c1222.codec import text
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.services import Response, Service
from c1222.codes import ResponseCode
from c1222.errors import C1222Error, DecodeError, LocalProtocolError
from c1222.session.dissect import Dissected, Dissector, record  # record: compiled, per message

if TYPE_CHECKING:  # crypto (and `cryptography`) is imported only when keys are given
    from c1222.crypto.keys import KeyTable

CAPTURE_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                  b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")
#: What a hex argument may hold (digits, and the colons and spaces of a pasted dump).
_HEX_ARGUMENT = re.compile(r"[0-9A-Fa-f: ]+")
#: Bytes that never occur in hex text: a file holding them in its first block is binary.
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")

#: Exit statuses (docs/messages.md).
EXIT_OK, EXIT_UNDECODED, EXIT_UNREADABLE = 0, 1, 2


class InputError(C1222Error):
    """An input that cannot be read at all (missing, a directory, neither capture nor hex)."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: a capture frame or a line of hex."""

    frame: int
    data: bytes
    time: float | None = None
    src: str | None = None
    dst: str | None = None
    transport: str | None = None
    error: DecodeError | None = None


def _hex_lines(lines: Iterable[str]) -> Iterator[Source]:
    """One message per non-empty line; ``#`` starts a comment. Numbered in input order."""
    number = 0
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        number += 1
        try:
            data = bytes.fromhex(line.replace(":", " "))
        except ValueError:
            yield Source(number, b"", error=DecodeError("not hexadecimal", 0, "input"))
            continue
        yield Source(number, data)


def _capture(path: Path | IO[bytes], ports: tuple[int, ...] | None,
             heuristic: bool) -> Iterator[Source]:
    from c1222.transport.pcap import read_capture

    # A CapturedApdu has every field of a Source, by the same names: passed on as it is
    # (building a Source per message cost about 1 µs of 25).
    return cast("Iterator[Source]", read_capture(path, ports=ports, heuristic=heuristic))


def _text_file(name: str, head: bytes, lines: Iterable[bytes]) -> Iterator[Source]:
    """Hex lines from a file or stdin whose first block is ``head``; binary is refused."""
    if _BINARY.search(head):
        raise InputError(f"{name}: neither a pcap/pcapng capture nor hex text")
    yield from _hex_lines(line.decode("ascii", "replace") for line in lines)


def check_inputs(inputs: tuple[str, ...]) -> list[str | Path]:
    """Each input as a file (Path) or a hex argument (str); InputError names one that is neither.

    An existing path is a file even when its name is hexadecimal; a missing one must look
    like hex, so a mistyped file name is reported rather than decoded as hex.
    """
    out: list[str | Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            raise InputError(f"{item}: is a directory")
        if path.exists():
            if not os.access(path, os.R_OK):
                raise InputError(f"{item}: permission denied")
            out.append(path)
        elif _HEX_ARGUMENT.fullmatch(item):
            out.append(item)
        else:
            raise InputError(f"{item}: no such file (nor hexadecimal)")
    return out


def read_sources(inputs: list[str | Path], ports: tuple[int, ...] | None,
                 heuristic: bool = False) -> Iterator[Source]:
    """Messages from hex arguments, files (captures or hex lines) or standard input.

    Hex arguments come after the files, numbered as one more input. Raises InputError
    for a file that is neither a capture nor hex text, or that cannot be read.
    """
    if not inputs:
        stdin = sys.stdin.buffer
        if not hasattr(stdin, "peek"):  # a plain binary stream (a test's): give it a buffer
            stdin = io.BufferedReader(stdin)  # type: ignore[arg-type]
        head = stdin.peek(4096)[:4096]
        if head[:4] in CAPTURE_MAGICS:
            yield from _capture(stdin, ports, heuristic)
        else:
            yield from _text_file("standard input", head, stdin)
        return
    for item in inputs:
        if not isinstance(item, Path):
            continue
        try:
            with item.open("rb") as fh:
                head = fh.read(4096)
                if head[:4] in CAPTURE_MAGICS:
                    fh.seek(0)
                    yield from _capture(fh, ports, heuristic)
                else:
                    fh.seek(0)
                    yield from _text_file(str(item), head, fh)
        except OSError as exc:
            raise InputError(f"{item}: {exc.strerror or exc}") from None
    yield from _hex_lines(item for item in inputs if isinstance(item, str))


# --------------------------------------------------------------------------- one line


def _short(value: Any) -> str:
    """A field value for the one-line view: long hex cut, table data as its size."""
    if isinstance(value, dict):
        if "count" in value and "data" in value:
            bad = "" if value.get("checksum_ok") is not False else " BAD CHECKSUM"
            return f"{value['count']} bytes{bad}"
        return "{" + " ".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_short, value)) + "]"
    value = str(value)
    return value if len(value) <= 24 else value[:20] + "..."


def service_brief(service: Service) -> str:
    """``full_read table_id=0``, ``read ok table_data=10 bytes``, ``isss``."""
    fields = text.service_to_json(service)
    name = fields.pop("service")
    code = fields.pop("response_code", None)
    fields.pop("code", None)
    parts = [p for p in (name, code) if p is not None]
    for key, value in fields.items():
        if value is None or value == [] or value == "" or key.endswith("_absolute"):
            continue
        parts.append(f"{key}={_short(value)}")
    return " ".join(map(str, parts))


def one_line(source: Source, result: Dissected | None, t0: float | None, arrow: str) -> str:
    """tshark's packet-list line: frame, time, endpoints, titles, mode, ids, services."""
    parts = [f"{source.frame:>5}"]
    if source.time is not None and t0 is not None:
        parts.append(f"{source.time - t0:11.6f}")
    if source.src is not None:
        parts.append(f"{source.src} {arrow} {source.dst} {(source.transport or '').upper()}")
    error = source.error if result is None else result.error
    if error is not None or result is None or result.apdu is None:
        parts.append(f"error: {error}")
        return " ".join(parts)
    apdu = result.apdu
    calling, called = apdu.calling_ap_title, apdu.called_ap_title
    parts.append(f"{'?' if calling is None else calling} {arrow} "
                 f"{'?' if called is None else called}")
    epsem = apdu.epsem
    parts.append(f"mode {int(epsem.security_mode)}")
    if apdu.called_ap_invocation_id is not None:
        parts.append(f"re {apdu.called_ap_invocation_id}")
    parts.append(f"id {apdu.calling_ap_invocation_id}")
    if result.mac_verified is not None:
        parts.append("MAC ok" if result.mac_verified else "MAC BAD")
    if epsem.ciphertext is not None:
        parts.append(f"[encrypted, {len(epsem.ciphertext)} bytes]")
    else:
        parts.append("; ".join(service_brief(s) for s in epsem.services) or "(no services)")
    return " ".join(parts)


# --------------------------------------------------------------------------- filters


def _words(name: str | None) -> tuple[str, ...]:
    return () if name is None else (name, *name.split("_"))


def make_filter(services: tuple[str, ...], titles: tuple[str, ...], codes: tuple[str, ...],
                modes: tuple[int, ...]) -> Callable[[Apdu], bool] | None:
    """A test for decoded messages (None when no filter is given).

    Several values of one filter: any of them; several filters: all of them.
    ``--service read`` also matches full_read, partial_read_offset and read responses.
    """
    if not (services or titles or codes or modes):
        return None
    try:
        wanted_titles = {str(Uid.parse(t).absolute()) for t in titles}
    except C1222Error as exc:
        raise click.BadParameter(str(exc), param_hint="--ap-title") from None
    wanted_codes: set[int] = set()
    for code in codes:
        if code.isdigit():
            wanted_codes.add(int(code))
            continue
        try:
            wanted_codes.add(ResponseCode[code.upper()])
        except KeyError:
            raise click.BadParameter(f"unknown response code {code!r}",
                                     param_hint="--response-code") from None
    wanted_services = {s.lower() for s in services}

    def match(apdu: Apdu) -> bool:
        epsem = apdu.epsem
        if modes and epsem.security_mode not in modes:
            return False
        if wanted_titles and not any(t is not None and str(t.absolute()) in wanted_titles
                                     for t in (apdu.calling_ap_title, apdu.called_ap_title)):
            return False
        if wanted_services and not any(wanted_services.intersection(_words(s.service))
                                       for s in epsem.services):
            return False
        return not wanted_codes or any(
            isinstance(s, Response) and s.response_code in wanted_codes for s in epsem.services)

    return match


def _tree_text(apdu: Apdu) -> str:
    lines = []
    for depth, label, data in text.tree(apdu):
        hexes = data.hex(" ")
        chunks = [hexes[i : i + 48] for i in range(0, len(hexes), 48)] or [""]
        left = "  " * depth + label
        if len(left) > 70:
            lines.append(left)
            left = ""
        lines.append(f"{left:<72}{chunks[0]}")
        lines.extend(" " * 72 + c for c in chunks[1:])
    return "\n".join(lines)


def _secured_tree_text(result: Dissected) -> str:
    """The tree; a decrypted mode-2 message shows its wire ciphertext, then what it decrypts to."""
    apdu = result.apdu
    assert apdu is not None
    epsem = apdu.epsem
    if epsem.security_mode != 2 or epsem.ciphertext is not None:
        return _tree_text(apdu)
    from c1222.codec import acse

    lines = [_tree_text(acse.decode(result.data)), "    decrypted:"]
    if epsem.ed_class is not None:
        lines.append(f"      ed_class {epsem.ed_class.hex(' ')}")
    for service in epsem.services:
        lines.append("      " + text.describe_service(service))
    if epsem.padding:
        lines.append(f"      padding {epsem.padding.hex(' ')}")
    return "\n".join(lines)


def _header(source: Source) -> str:
    if source.src:
        return (f"frame {source.frame} ({source.src} -> {source.dst} {source.transport}, "
                f"{len(source.data)} bytes)")
    return f"message {source.frame} ({len(source.data)} bytes)"


# msgspec's encoder: 5-9x faster than the standard library's C encoder on these records, and
# 3-6x faster than orjson (benchmarks/decode.py); the same bytes for ASCII text and integers of
# any size. It writes non-ASCII as UTF-8 rather than \u escapes, and floats in the shortest
# exponent form (1e-6, not 1e-06): the same JSON values. A string it refuses (a lone surrogate)
# falls back to the standard library for that record.
_encoder = msgspec.json.Encoder()
_std_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _dumps(value: Any) -> str:
    """One record as compact JSON text."""
    try:
        return _encoder.encode(value).decode()
    except (UnicodeEncodeError, TypeError, OverflowError):
        return _std_dumps(value)


def json_lines(values: list[Any]) -> bytes:
    """Records as JSON lines, each ending in a newline, encoded in one call."""
    try:
        return _encoder.encode_lines(values)
    except (UnicodeEncodeError, TypeError, OverflowError):
        return "".join(_dumps(v) + "\n" for v in values).encode()


#: Records per write, encoded by one msgspec call. At 4,096 (3.4 MB of text) every batch's
#: buffer was new memory from the kernel (24,000 page faults per 100,000 messages, 8 % of
#: the run); a batch of about 200 KB reuses what malloc freed.
JSON_BATCH = 256


def _reader_gone() -> None:
    """`decode ... | head`: the reader has what it wanted; stop quietly, as tshark does."""
    try:
        # Python flushes stdout again at exit: point it at /dev/null so that flush is silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_OK)


def _flush_json(buffer: list[Any], out: IO[str]) -> None:
    if buffer:
        data = json_lines(buffer)
        buffer.clear()
        raw = getattr(out, "buffer", None)
        if raw is None:
            out.write(data.decode())
        else:  # straight to the bytes below: no text layer to encode 84 MB again
            out.flush()
            raw.write(data)


#: A capture from this size on, on a machine with this many cores, is decoded by worker
#: processes (--jobs 0). The main process reads, deals out and writes (about a sixth of the
#: work), so from 4 cores it keeps one core and each other core runs a worker; on 2 or 3 every
#: core runs a worker beside it (BENCHMARKS.md, "Decoding a capture").
PARALLEL_FROM_BYTES = 2_000_000
PARALLEL_FROM_CORES = 2


def _workers(jobs: int, inputs: list[str | Path]) -> int:
    """How many decoding processes: --jobs, or for 0 one per core on one large capture file
    (starting workers costs more than a small capture takes)."""
    if jobs:
        return jobs
    if len(inputs) != 1 or not isinstance(inputs[0], Path):
        return 1
    try:
        with inputs[0].open("rb") as fh:
            if fh.read(4) not in CAPTURE_MAGICS:
                return 1
        size = inputs[0].stat().st_size
    except OSError:
        return 1  # the serial path reports it
    cores = len(os.sched_getaffinity(0))
    if size < PARALLEL_FROM_BYTES or cores < PARALLEL_FROM_CORES:
        return 1
    return min(cores if cores < 4 else cores - 1, 8)


def _key_options(command: Any) -> Any:
    """``--key ID:HEX`` (decimal id, repeatable) and ``--keys FILE`` (Wireshark's format)."""
    command = click.option("--keys", "keys_file", type=click.Path(dir_okay=False),
                           help="Key file in Wireshark's c1222_decryption_table format "
                                '(\'"2",0102...\', hex key ids).')(command)
    return click.option("--key", "key_specs", multiple=True, metavar="ID:HEX",
                        help="EAX' key: decimal key id, colon, 32 hex digits. Repeatable; "
                             "overrides --keys.")(command)


def load_keys(key_specs: tuple[str, ...], keys_file: str | None) -> KeyTable | None:
    """The key table from ``--keys`` then ``--key`` (which wins); None when neither is given.

    Errors name the file and line or the option, never the key bytes (crypto/keys).
    """
    if not key_specs and keys_file is None:
        return None
    from c1222.crypto.keys import KeyTable

    try:
        keys = KeyTable() if keys_file is None else KeyTable.load(keys_file)
        keys.update(KeyTable.from_cli(key_specs))
    except C1222Error as exc:
        raise click.UsageError(str(exc)) from None
    return keys


@click.command()
@click.argument("inputs", nargs=-1)
@click.option("-V", "--verbose", is_flag=True,
              help="Each message as a tree, every element beside its bytes (tshark -V).")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
@click.option("--port", "ports", type=click.IntRange(0, 65535), multiple=True,
              help="Only this TCP/UDP port, all of it C12.22, as tshark -d "
                   "(repeatable). Default: port 1153, and C12.22 found on any other port.")
@click.option("--all-ports", is_flag=True,
              help="All TCP/UDP traffic is C12.22: what is not says so as an error.")
@click.option("--service", "services", multiple=True, metavar="NAME",
              help="Only messages with this service (read: every read and its response).")
@click.option("--ap-title", "titles", multiple=True, metavar="UID",
              help="Only messages from or to this AP title (.123.8437 or absolute).")
@click.option("--response-code", "codes", multiple=True, metavar="CODE",
              help="Only messages with a response of this code (ok, isss, ... or a number).")
@click.option("--security-mode", "modes", type=click.IntRange(0, 3), multiple=True,
              help="Only messages in this security mode (0, 1, 2).")
@click.option("--jobs", "-j", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Worker processes for a large capture (split by connection, output in "
                   "capture order); 0: one per core (but one on a machine of 4 cores or "
                   "more) when the capture is over 2 MB; 1: none.")
@_key_options
def decode(inputs: tuple[str, ...], verbose: bool, as_json: bool, ports: tuple[int, ...],
           all_ports: bool, services: tuple[str, ...], titles: tuple[str, ...],
           codes: tuple[str, ...], modes: tuple[int, ...], jobs: int,
           key_specs: tuple[str, ...], keys_file: str | None) -> None:
    """Decode C12.22 messages: hex arguments, capture files (pcap, pcapng) or hex on stdin.

    One line per message by default (as tshark), a tree with -V, JSON with --json.
    A message that does not decode is reported with the offset and reason; decoding
    goes on with the next one. With keys, secured messages are verified
    (``mac_verified``) and decrypted; without the key for their key id they stay as they are.
    Filters (--service, --ap-title, --response-code, --security-mode) choose which decoded
    messages are shown.

    Exit status: 0 every message decoded; 1 some message did not decode, or no C12.22
    message was found; 2 bad usage, or an input that cannot be read.
    """
    keys = load_keys(key_specs, keys_file)
    wanted = make_filter(services, titles, codes, modes)
    try:
        checked = check_inputs(inputs)
    except InputError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_UNREADABLE)
    unprotect = None
    if keys is not None:
        from c1222.crypto.policy import make_unprotect

        unprotect = make_unprotect(keys)
    dissector = Dissector(unprotect=unprotect)
    if all_ports:
        port_filter, heuristic = None, False
    elif ports:
        port_filter, heuristic = ports, False
    else:
        port_filter, heuristic = (1153,), True
    out = sys.stdout
    arrow = "\u2192" if (out.encoding or "").lower().replace("-", "") == "utf8" else "->"
    buffer: list[dict[str, Any]] = []
    failures = seen = 0
    t0: float | None = None
    status = EXIT_OK
    workers = 0 if verbose else _workers(jobs, checked)
    # Decoded messages are freed by reference counting: at the default threshold (700 more
    # container objects made than freed) the collector ran 390 times per 100,000 messages
    # (5 % of the run), walking the records that wait for their write and finding nothing.
    # Still collected from 20,000; restored at the end for a caller that goes on.
    thresholds = gc.get_threshold()
    gc.set_threshold(20_000, *thresholds[1:])
    try:
        if workers > 1:
            from c1222.cli import parallel

            seen, failures = parallel.decode(
                read_sources(checked, port_filter, heuristic), workers,
                parallel.Settings(as_json, arrow, (services, titles, codes, modes),
                                  key_specs, keys_file), out)
        dissect = dissector.dissect  # bound once: this loop runs per message
        for source in () if workers > 1 else read_sources(checked, port_filter, heuristic):
            seen += 1
            result = None
            if source.error is None:
                result = dissect(source.data, source.src, source.dst)
            failed = result is None or result.error is not None
            failures += failed
            if t0 is None:
                t0 = source.time
            if wanted is not None and (result is None or result.apdu is None
                                       or not wanted(result.apdu)):
                continue
            if as_json:
                buffer.append(record(source, result))
                if len(buffer) >= JSON_BATCH:
                    _flush_json(buffer, out)
            elif not verbose:
                out.write(one_line(source, result, t0, arrow) + "\n")
            else:
                out.write(_header(source) + "\n")
                if result is not None and result.apdu is not None:
                    if result.mac_verified is not None:
                        out.write(f"  MAC verified: {'yes' if result.mac_verified else 'NO'}\n")
                    out.write(_secured_tree_text(result) + "\n\n")
                else:
                    error = source.error if result is None else result.error
                    out.write(f"  error: {error}\n  hex: {source.data.hex(' ')}\n\n")
    except InputError as exc:
        click.echo(f"Error: {exc}", err=True)
        status = EXIT_UNREADABLE
    except DecodeError as exc:  # the capture file itself: not pcap, or cut short
        click.echo(f"Error: {exc}", err=True)
        status = EXIT_UNREADABLE
    except BrokenPipeError:
        _reader_gone()
    try:
        _flush_json(buffer, out)
        out.flush()
    except BrokenPipeError:
        _reader_gone()
    gc.set_threshold(*thresholds)
    if failures:
        click.echo(f"{failures} message(s) did not decode", err=True)
        status = status or EXIT_UNDECODED
    elif not seen and status == EXIT_OK:
        where = "" if not heuristic else " (looked on every port; --port P decodes port P)"
        click.echo(f"no C12.22 message found{where}", err=True)
        status = EXIT_UNDECODED
    if status:
        sys.exit(status)


@click.command()
@click.argument("file", type=click.File("r"), default="-")
@_key_options
@click.option("--security-mode", type=click.IntRange(1, 2),
              help="Secure cleartext records in this mode (needs a key).")
@click.option("--key-id", type=click.IntRange(0, 255),
              help="Key id for records that carry none (default: the only key given).")
@click.option("--iv", "iv_hex", metavar="HEX",
              help="4-byte IV (8 hex digits) for records that carry none "
                   "(default: Unix time, never repeated).")
def encode(file: IO[str], key_specs: tuple[str, ...], keys_file: str | None,
           security_mode: int | None, key_id: int | None, iv_hex: str | None) -> None:
    """Encode JSON records (one per line, as `decode --json` prints them) to hex, one per line.

    With keys, records asking for security mode 1 or 2 are secured (EAX', digest 5) with the
    key id and IV they carry, so `decode --key` then `encode --key` gives the same bytes;
    `--security-mode` secures cleartext records too.
    """
    keys = load_keys(key_specs, keys_file)
    if keys is None and (security_mode or key_id is not None or iv_hex):
        raise click.UsageError("--security-mode, --key-id and --iv need --key or --keys")
    secure = None if keys is None else _securer(keys, security_mode, key_id, iv_hex)
    failed = 0
    for number, line in enumerate(file, 1):
        if not line.strip():
            continue
        try:
            click.echo(encode_record(line, secure).hex())
        except C1222Error as exc:
            failed += 1
            click.echo(f"line {number}: {exc}", err=True)
    if failed:
        click.echo(f"{failed} line(s) did not encode", err=True)
        raise SystemExit(1)


def encode_record(line: str, secure: Callable[[Apdu], bytes] | None = None) -> bytes:
    """The bytes of one JSON record; C1222Error (LocalProtocolError) says what is wrong."""
    try:
        value = json.loads(line.strip())
    except ValueError as exc:  # JSONDecodeError, and ints over Python's digit limit
        raise LocalProtocolError(f"not JSON: {exc}") from None
    except RecursionError:  # thousands of nested [ or {: no record is that deep
        raise LocalProtocolError("not a record: nested too deeply") from None
    if isinstance(value, dict) and "error" in value:
        error = value["error"]
        reason = error.get("reason") if isinstance(error, dict) else error
        raise LocalProtocolError(f"the record is of a message that did not decode ({reason})")
    apdu = text.from_json(value)
    if secure is not None:
        return secure(apdu)
    epsem = apdu.epsem
    if epsem.security_mode == 2 and epsem.ciphertext is None:
        raise LocalProtocolError("security mode 2 without its ciphertext: give --key to "
                                 "encrypt it")
    if epsem.secured and epsem.mac is None:
        raise LocalProtocolError(f"security mode {epsem.security_mode} without its MAC: "
                                 "give --key to compute it")
    return apdu.encode()


def _securer(keys: KeyTable, security_mode: int | None, key_id: int | None,
             iv_hex: str | None) -> Callable[[Apdu], bytes]:
    """Encode-and-secure for `encode`: the record's key id and IV first, then the options."""
    import dataclasses
    import time

    from c1222.crypto.nonces import TimeIvSource
    from c1222.crypto.policy import protect

    iv = None
    if iv_hex is not None:
        try:
            iv = bytes.fromhex(iv_hex)
        except ValueError:
            iv = b""
        if len(iv) != 4:
            raise click.BadParameter("expected 8 hex digits", param_hint="--iv")
    if key_id is None and len(keys) == 1:
        key_id = keys.key_ids()[0]
    nonces = TimeIvSource(time.time)

    def secure(apdu: Apdu) -> bytes:
        epsem = apdu.epsem
        if security_mode and epsem.security_mode == 0:
            apdu = dataclasses.replace(apdu, epsem=dataclasses.replace(
                epsem, security_mode=security_mode, mac=None))
        if apdu.epsem.security_mode == 0 or apdu.epsem.ciphertext is not None:
            return apdu.encode()  # cleartext, or ciphertext we cannot re-secure: as it is
        if apdu.key_id is None and key_id is None:
            raise C1222Error("no key id: give --key-id (several keys are loaded)")
        record_iv = apdu.iv if apdu.iv is not None else iv
        return protect(apdu, keys, key_id=key_id,
                       iv=record_iv or nonces.iv_for(apdu.calling_ap_invocation_id))

    return secure
