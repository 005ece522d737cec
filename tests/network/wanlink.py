"""The WAN's delay: a transparent layer-2 forwarder with per-frame delay (docs/network-testbed.md).

Runs inside the test bed's "wan" namespace, which holds two veth ends and no addresses. Every
Ethernet frame read on one end (an AF_PACKET socket) is written, after a delay drawn uniformly
from [delay - jitter, delay + jitter], on the other end. Frames leave in the order they came (a
frame never overtakes the one before it, as on a cellular link whose radio link protocol delivers
in order), so the delay of a frame is max(its draw, the previous frame's release). The kernels on
either side see each other's real addresses and do their own TCP (retransmissions included);
rate and loss are made elsewhere (tbf and iptables on the two end hosts).

The kernel here has no netem qdisc, and NFQUEUE would need a Python binding to
libnetfilter_queue that is not installed, hence this process.

    ip netns exec NS python wanlink.py IF_A IF_B [--delay-ms 150] [--jitter-ms 50] [--seed N]
                                                 [--max-held 4096]

Prints ``wanlink ready`` once both sockets are bound; on SIGINT/SIGTERM prints one line of
counters (``wanlink frames a>b N b>a N dropped N``) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
#: sll_pkttype of a frame this host sent (AF_PACKET sees its own transmissions too).
PACKET_OUTGOING = 4
#: Frames held per direction beyond which new ones are dropped (a router's tail drop); at the
#: shaped WAN's 150 kbit/s the tbf in front lets far fewer than this be in flight.
MAX_HELD = 4096
#: Largest frame read: the MTU (offloads are off on the WAN ends) plus the Ethernet header.
MAX_FRAME = 65535


def _socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


class Direction:
    """Frames from one end to the other: read, hold until their release time, write in order."""

    def __init__(self, src: socket.socket, dst: socket.socket, draw, loop,
                 max_held: int = MAX_HELD) -> None:
        self.src, self.dst, self.draw, self.loop = src, dst, draw, loop
        self.max_held = max_held
        self.held: collections.deque[tuple[float, bytes]] = collections.deque()
        self.last_release = 0.0
        self.frames = 0
        self.dropped = 0
        self.timer: asyncio.TimerHandle | None = None
        loop.add_reader(src.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                frame, address = self.src.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            if address[2] == PACKET_OUTGOING:
                continue
            if len(self.held) >= self.max_held:
                self.dropped += 1
                continue
            # In order: never before the previous frame (no reordering on the link).
            release = max(self.loop.time() + self.draw(), self.last_release)
            self.last_release = release
            self.held.append((release, frame))
            if self.timer is None:
                self.timer = self.loop.call_at(release, self._release)

    def _release(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.held and self.held[0][0] <= now + 0.0005:
            _, frame = self.held.popleft()
            try:
                self.dst.send(frame)
                self.frames += 1
            except OSError:
                # A full transmit queue or a frame the other end refuses: the link loses it.
                self.dropped += 1
        if self.held:
            self.timer = self.loop.call_at(self.held[0][0], self._release)


async def run(if_a: str, if_b: str, delay: float, jitter: float, seed: int | None,
              max_held: int = MAX_HELD) -> str:
    rng = random.Random(seed)
    low, high = max(0.0, delay - jitter), delay + jitter

    def draw() -> float:
        return rng.uniform(low, high)

    loop = asyncio.get_running_loop()
    a, b = _socket(if_a), _socket(if_b)
    a_to_b = Direction(a, b, draw, loop, max_held)
    b_to_a = Direction(b, a, draw, loop, max_held)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("wanlink ready", flush=True)
    await stop.wait()
    return (f"wanlink frames a>b {a_to_b.frames} b>a {b_to_a.frames} "
            f"dropped {a_to_b.dropped + b_to_a.dropped}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("if_a")
    parser.add_argument("if_b")
    parser.add_argument("--delay-ms", type=float, default=150.0)
    parser.add_argument("--jitter-ms", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-held", type=int, default=MAX_HELD)
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.jitter_ms < 0 or args.max_held < 1:
        parser.error("delay and jitter are not negative; --max-held is at least 1")
    started = time.monotonic()
    summary = asyncio.run(run(args.if_a, args.if_b, args.delay_ms / 1000,
                              args.jitter_ms / 1000, args.seed, args.max_held))
    print(f"{summary} seconds {time.monotonic() - started:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
