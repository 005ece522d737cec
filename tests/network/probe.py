"""Small network programs the test bed runs inside its hosts (python probe.py COMMAND ...).

    offloads-off IF...            checksum, scatter-gather and segmentation offloads off (ethtool
                                  ioctls; no ethtool binary needed), so frames are whole on the wire
    serve [--port P] [--forward HOST:PORT]
                                  a TCP and UDP echo server on 0.0.0.0:P, or a plain forwarder to
                                  HOST:PORT (TCP: byte stream each way; UDP: datagram and answer);
                                  prints ``listening on tcp+udp IP:PORT``
    ping HOST PORT [--count N] [--interval S] [--timeout S]
                                  UDP echoes; prints JSON {sent, received, rtts}
    throughput HOST PORT [--bytes N]
                                  N bytes through a TCP echo; prints JSON {bytes, seconds, kbit_s}

Standard library only: it runs with whatever Python the bed is given.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import fcntl
import json
import os
import socket
import struct
import sys
import time

SIOCETHTOOL = 0x8946
#: ETHTOOL_S{TXCSUM,RXCSUM,SG,TSO,GSO,GRO}: the legacy set-value commands (linux/ethtool.h).
OFFLOADS = {"tx-checksum": 0x17, "rx-checksum": 0x15, "scatter-gather": 0x19,
            "tso": 0x1F, "gso": 0x24, "gro": 0x2C}


def offloads_off(interfaces: list[str]) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    failed = {}
    for ifname in interfaces:
        for name, command in OFFLOADS.items():
            value = ctypes.create_string_buffer(struct.pack("II", command, 0))
            request = bytearray(struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
                                .ljust(40, b"\0"))
            try:
                fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
            except OSError as exc:
                failed[f"{ifname}/{name}"] = str(exc)
    sock.close()
    if failed:
        raise SystemExit(f"offloads-off: {failed}")
    return {"interfaces": interfaces}


class EchoUdp(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)


class ForwardUdp(asyncio.DatagramProtocol):
    """Each datagram goes upstream from a socket of its own; the answers come back to the sender."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        asyncio.ensure_future(self._forward(data, addr))

    async def _forward(self, data: bytes, addr) -> None:
        loop = asyncio.get_running_loop()
        downstream = self.transport

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, answer: bytes, _addr) -> None:
                downstream.sendto(answer, addr)

        transport, _ = await loop.create_datagram_endpoint(Back, remote_addr=self.upstream)
        transport.sendto(data)
        await asyncio.sleep(30)
        transport.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(port: int, forward: tuple[str, int] | None) -> None:
    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if forward is None:
            await _pipe(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*forward)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(on_tcp, "0.0.0.0", port)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    factory = EchoUdp if forward is None else (lambda: ForwardUdp(forward))
    await loop.create_datagram_endpoint(factory, local_addr=("0.0.0.0", port))
    print(f"listening on tcp+udp 0.0.0.0:{port}", flush=True)
    await asyncio.Event().wait()


def ping(host: str, port: int, count: int, interval: float, timeout: float) -> dict:
    """Send ``count`` numbered probes ``interval`` apart; answers are matched by number."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.setblocking(False)
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    start = time.monotonic()
    next_send, seq = start, 0
    while True:
        now = time.monotonic()
        if seq < count and now >= next_send:
            sent_at[seq] = now
            try:
                sock.send(struct.pack("!Q", seq) + os.urandom(24))
            except OSError:
                pass  # unreachable: the probe is lost

            seq += 1
            next_send += interval
        try:
            while True:
                data = sock.recv(2048)
                number = struct.unpack("!Q", data[:8])[0]
                if number in sent_at and number not in rtts:
                    rtts[number] = time.monotonic() - sent_at[number]
        except OSError:
            pass  # nothing yet, or an ICMP error for an earlier probe
        if seq >= count and (len(rtts) == count or now > sent_at[count - 1] + timeout):
            break
        time.sleep(0.001)
    return {"sent": count, "received": len(rtts), "rtts": [rtts[k] for k in sorted(rtts)]}


def throughput(host: str, port: int, size: int) -> dict:
    data = os.urandom(size)
    start = time.monotonic()
    sock = socket.create_connection((host, port), timeout=120)
    received = bytearray()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        sender = loop.create_task(loop.sock_sendall(sock, data))
        while len(received) < size:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                break
            received.extend(chunk)
        await sender

    asyncio.run(run())
    seconds = time.monotonic() - start
    sock.close()
    if bytes(received) != data:
        raise SystemExit("throughput: the echo differs from what was sent")
    return {"bytes": size, "seconds": seconds, "kbit_s": size * 8 / seconds / 1000}


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    off = commands.add_parser("offloads-off")
    off.add_argument("interfaces", nargs="+")
    srv = commands.add_parser("serve")
    srv.add_argument("--port", type=int, default=0)
    srv.add_argument("--forward", type=_address)
    png = commands.add_parser("ping")
    png.add_argument("host")
    png.add_argument("port", type=int)
    png.add_argument("--count", type=int, default=200)
    png.add_argument("--interval", type=float, default=0.02)
    png.add_argument("--timeout", type=float, default=3.0)
    thr = commands.add_parser("throughput")
    thr.add_argument("host")
    thr.add_argument("port", type=int)
    thr.add_argument("--bytes", type=int, default=32768)
    args = parser.parse_args(argv)
    if args.command == "offloads-off":
        result = offloads_off(args.interfaces)
    elif args.command == "serve":
        try:
            asyncio.run(serve(args.port, args.forward))
        except KeyboardInterrupt:
            pass
        return 0
    elif args.command == "ping":
        result = ping(args.host, args.port, args.count, args.interval, args.timeout)
    else:
        result = throughput(args.host, args.port, args.bytes)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
