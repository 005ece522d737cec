"""`c1222 decode` and `c1222 encode`: messages between bytes and their canonical JSON form."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import orjson

from c1222.codec import text
from c1222.codec.acse import Apdu
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


def _header(source: Source) -> str:
    where = f"{source.src} -> {source.dst} {source.transport}" if source.src else "hex input"
    return f"message {source.frame} ({where}, {len(source.data)} bytes)"


def _flush_json(buffer: list[bytes]) -> None:
    if buffer:
        sys.stdout.flush()
        sys.stdout.buffer.write(b"\n".join(buffer) + b"\n")
        sys.stdout.buffer.flush()
        buffer.clear()


@click.command()
@click.argument("inputs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
@click.option("--port", "ports", type=int, multiple=True,
              help="C12.22 port(s) in a capture (default 1153).")
@click.option("--all-ports", is_flag=True, help="Decode TCP/UDP traffic on any port.")
def decode(inputs: tuple[str, ...], as_json: bool, ports: tuple[int, ...], all_ports: bool) -> None:
    """Decode C12.22 messages: hex arguments, capture files (pcap, pcapng) or hex on stdin.

    A message that does not decode is reported with the offset and reason;
    decoding goes on with the next one.
    """
    dissector = Dissector()
    port_filter = None if all_ports else (ports or (1153,))
    out = sys.stdout
    buffer: list[bytes] = []
    failures = 0
    try:
        for source in read_sources(inputs, port_filter):
            result = None
            if source.error is None:
                result = dissector.dissect(source.data, source.src, source.dst)
            failures += (result is None or result.error is not None)
            if as_json:
                buffer.append(orjson.dumps(record(source, result)))
                if len(buffer) >= 4096:
                    _flush_json(buffer)
                continue
            out.write(_header(source) + "\n")
            if result is not None and result.apdu is not None:
                out.write(_tree_text(result.apdu) + "\n\n")
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
def encode(file: IO[str]) -> None:
    """Encode JSON records (one per line, as `decode --json` prints them) to hex, one per line."""
    failed = 0
    for number, line in enumerate(file, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            if "error" in value:
                raise C1222Error(f"record did not decode: {value['error'].get('reason')}")
            click.echo(text.from_json(value).encode().hex())
        except (ValueError, C1222Error) as exc:
            failed += 1
            click.echo(f"line {number}: {exc}", err=True)
    if failed:
        raise SystemExit(1)
