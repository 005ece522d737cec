"""`c1222 decode` and `c1222 encode`: messages between bytes and their canonical JSON form."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from c1222.codec import text
from c1222.codec.acse import Apdu
from c1222.crypto.keys import KeyTable
from c1222.errors import C1222Error, DecodeError
from c1222.session.dissect import Dissected, Dissector

CAPTURE_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                  b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")


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


def _capture(path: Path | IO[bytes], ports: tuple[int, ...] | None) -> Iterator[Source]:
    from c1222.transport.pcap import read_capture

    for rec in read_capture(path, ports=ports):
        yield Source(rec.frame, rec.data, rec.time, rec.src, rec.dst, rec.transport, rec.error)


def read_sources(inputs: tuple[str, ...], ports: tuple[int, ...] | None) -> Iterator[Source]:
    """Messages from hex arguments, files (captures or hex lines) or standard input."""
    if not inputs:
        stdin = sys.stdin.buffer
        head = stdin.peek(4)[:4] if hasattr(stdin, "peek") else b""
        if head in CAPTURE_MAGICS:
            yield from _capture(stdin, ports)
        else:
            yield from _hex_lines(line.decode("ascii", "replace") for line in stdin)
        return
    for item in inputs:
        path = Path(item)
        if path.is_file():
            with path.open("rb") as fh:
                if fh.read(4) in CAPTURE_MAGICS:
                    yield from _capture(path, ports)
                    continue
            with path.open(encoding="ascii", errors="replace") as lines:
                yield from _hex_lines(lines)
    hex_args = [item for item in inputs if not Path(item).is_file()]
    yield from _hex_lines(hex_args)


def record(source: Source, result: Dissected | None) -> dict[str, Any]:
    """The JSON record of one message: where it was seen, then the message or its error."""
    out: dict[str, Any] = {"frame": source.frame, "time": source.time, "src": source.src,
                           "dst": source.dst, "transport": source.transport,
                           "length": len(source.data)}
    error = source.error if result is None else result.error
    if error is not None:
        out["error"] = {"reason": error.reason, "offset": error.offset, "path": error.path}
        out["hex"] = source.data.hex()
        return out
    assert result is not None and result.apdu is not None
    out.update(text.to_json(result.apdu))
    out["mac_verified"] = result.mac_verified
    return out


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
        fields = text.service_to_json(service)
        lines.append("      " + " ".join(f"{k}={v}" for k, v in fields.items()
                                          if v is not None and k != "checksum_ok"))
    if epsem.padding:
        lines.append(f"      padding {epsem.padding.hex(' ')}")
    return "\n".join(lines)


def _header(source: Source) -> str:
    if source.src:
        return (f"frame {source.frame} ({source.src} -> {source.dst} {source.transport}, "
                f"{len(source.data)} bytes)")
    return f"message {source.frame} ({len(source.data)} bytes)"


# The standard library's C encoder: on this workload it beat orjson (benchmarks/decode.py).
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _flush_json(buffer: list[str]) -> None:
    if buffer:
        sys.stdout.write("\n".join(buffer) + "\n")
        buffer.clear()


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
    try:
        keys = KeyTable() if keys_file is None else KeyTable.load(keys_file)
        keys.update(KeyTable.from_cli(key_specs))
    except C1222Error as exc:
        raise click.UsageError(str(exc)) from None
    return keys


@click.command()
@click.argument("inputs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
@click.option("--port", "ports", type=int, multiple=True,
              help="C12.22 port(s) in a capture (default 1153).")
@click.option("--all-ports", is_flag=True, help="Decode TCP/UDP traffic on any port.")
@_key_options
def decode(inputs: tuple[str, ...], as_json: bool, ports: tuple[int, ...], all_ports: bool,
           key_specs: tuple[str, ...], keys_file: str | None) -> None:
    """Decode C12.22 messages: hex arguments, capture files (pcap, pcapng) or hex on stdin.

    A message that does not decode is reported with the offset and reason;
    decoding goes on with the next one. With keys, secured messages are verified
    (``mac_verified``) and decrypted; without the key for their key id they stay as they are.
    """
    from c1222.crypto.policy import make_unprotect

    keys = load_keys(key_specs, keys_file)
    dissector = Dissector(unprotect=None if keys is None else make_unprotect(keys))
    port_filter = None if all_ports else (ports or (1153,))
    out = sys.stdout
    buffer: list[str] = []
    failures = 0
    try:
        for source in read_sources(inputs, port_filter):
            result = None
            if source.error is None:
                result = dissector.dissect(source.data, source.src, source.dst)
            failures += (result is None or result.error is not None)
            if as_json:
                buffer.append(_dumps(record(source, result)))
                if len(buffer) >= 4096:
                    _flush_json(buffer)
                continue
            out.write(_header(source) + "\n")
            if result is not None and result.apdu is not None:
                if result.mac_verified is not None:
                    out.write(f"  MAC verified: {'yes' if result.mac_verified else 'NO'}\n")
                out.write(_secured_tree_text(result) + "\n\n")
            else:
                error = source.error if result is None else result.error
                out.write(f"  error: {error}\n  hex: {source.data.hex(' ')}\n\n")
    except C1222Error as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        _flush_json(buffer)
    if failures:
        click.echo(f"{failures} message(s) did not decode", err=True)


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
            value = json.loads(line)
            if "error" in value:
                raise C1222Error(f"record did not decode: {value['error'].get('reason')}")
            apdu = text.from_json(value)
            click.echo((apdu.encode() if secure is None else secure(apdu)).hex())
        except (ValueError, C1222Error) as exc:
            failed += 1
            click.echo(f"line {number}: {exc}", err=True)
    if failed:
        raise SystemExit(1)


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
        return protect(apdu, keys, key_id=key_id, iv=record_iv or nonces.iv())

    return secure
