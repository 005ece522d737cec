"""One C12.22 request from inside a bed's host, as a head-end would send it; prints JSON.

    python ask.py HOST:PORT CALLED SERVICE [ARG] [--mode M] [--key ID:HEX] [--timeout S]
                  [--calling TITLE]

SERVICE: ``read`` TABLE (Security with the operator's password + Full Read), ``resolve`` TITLE,
``trace`` TITLE, ``identify``, ``register`` TITLE:IP (a Register of TITLE at native address
IP:1153, as a node would send it to its relay). The answer: ``{"codes": [...], ...}`` with the
response codes by name and what the service returned (``bytes`` of a read, ``native`` of a
Resolve, ``path`` of a Trace, ``reg_ap_title`` of a Register); ``{"error": "..."}`` when no
answer came (time-out, connection refused or closed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from c1222.codec.ber import Uid
from c1222.codec.framing import StreamFramer
from c1222.codec.services import (
    FullReadRequest, IdentifyRequest, ReadResponse, RegisterRequest, RegisterResponse,
    ResolveRequest, ResolveResponse, SecurityRequest, TraceRequest, TraceResponse)
from c1222.codes import ResponseCode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import TimeIvSource
from c1222.errors import C1222Error
from c1222.session.registrar import decode_native, encode_native
from c1222.session.requester import Requester
from c1222.tables.access import pad_password
from c1222.transport.client import responses

HEADEND = "2.16.124.113620.1.22.0.123.4"


def build(service: str, arg: str | None) -> list:
    if service == "read":
        return [SecurityRequest(pad_password("PASSWORD"), 2), FullReadRequest(int(arg or 28))]
    if service == "resolve":
        return [ResolveRequest(Uid.parse(arg))]
    if service == "trace":
        return [TraceRequest(Uid.parse(arg))]
    if service == "identify":
        return [IdentifyRequest()]
    if service == "register":
        title, _, ip = (arg or "").partition(":")
        return [RegisterRequest(node_type=0x20, connection_type=0x01,
                                device_class=b"\x00\x00\x00\x00", ap_title=Uid.parse(title),
                                serial_number=Uid.parse("2.16.124.113620.1.22.0.1"),
                                native_address=encode_native(ip, 1153), registration_period=60)]
    raise SystemExit(f"ask: unknown service {service}")


async def ask(address: tuple[str, int], data: bytes, timeout: float) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
    try:
        writer.write(data)
        framer = StreamFramer(1 << 20)
        deadline = time.monotonic() + timeout
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            if not chunk:
                raise ConnectionError("the peer closed the connection")
            got = framer.feed(chunk)
            if got:
                return got[0]
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("called")
    parser.add_argument("service")
    parser.add_argument("arg", nargs="?")
    parser.add_argument("--mode", type=int, default=0)
    parser.add_argument("--key", default="2:000102030405060708090A0B0C0D0E0F")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--calling", default=HEADEND)
    args = parser.parse_args(argv)
    host, _, port = args.address.rpartition(":")
    requester = Requester(Uid.parse(args.calling), TimeIvSource(time.time),
                          keys=KeyTable.from_cli([args.key]), security_mode=args.mode,
                          key_id=2 if args.mode else None)
    pending = requester.request(build(args.service, args.arg), Uid.parse(args.called))
    started = time.monotonic()
    try:
        data = asyncio.run(ask((host, int(port)), pending.data, args.timeout))
    except (OSError, asyncio.TimeoutError) as exc:
        print(json.dumps({"error": type(exc).__name__ + f": {exc}",
                          "seconds": time.monotonic() - started}))
        return 0
    seconds = time.monotonic() - started
    try:
        answers = responses(requester.accept(data, pending, time.time()))
    except C1222Error as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "seconds": seconds}))
        return 0
    out: dict = {"codes": [ResponseCode(r.response_code).name for r in answers],
                 "seconds": seconds}
    for r in answers:
        if isinstance(r, ReadResponse):
            out["bytes"] = len(r.table_data.data)
        elif isinstance(r, ResolveResponse):
            out["native"] = "%s:%d" % decode_native(r.native_address)
        elif isinstance(r, TraceResponse):
            out["path"] = [str(t) for t in r.ap_titles]
        elif isinstance(r, RegisterResponse):
            out["reg_ap_title"] = str(r.reg_ap_title)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
