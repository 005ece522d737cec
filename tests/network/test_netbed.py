"""The test bed itself: the WAN is shaped, the issue's topology routes, and a bed leaves nothing
behind (docs/network-testbed.md). Stand-ins (UDP/TCP echoes and a plain forwarder) take the place
of C12.22 nodes here; tests/network/test_network.py runs the real ones."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from tests.network.netbed import (
    PREFIX, PROBE, Bed, WanShape, _namespaces, build_network, measure_wan, require_netbed,
    sweep_stale)

pytestmark = pytest.mark.network


def test_wan_is_shaped(bed: Bed) -> None:
    """Delay both ways (every RTT >= 2 x the smallest delay), loss by the iptables rule (counted
    over about 1,300 packets: P(no drop at 1 %) < 1e-5), rate under the tbf's (a bound, not a
    timing: tbf cannot let more through)."""
    a, b = bed.host("a"), bed.host("b")
    wan = bed.wan(a, "10.16.2.1", b, "10.16.2.2", WanShape())
    figures = measure_wan(wan, probes=600, interval=0.008, transfer=16384)
    assert figures["answered"] > 0
    assert figures["rtt_min"] >= 2 * (WanShape().delay - WanShape().jitter)
    assert figures["rtt_p50"] > 0.2
    assert figures["packets_dropped"] > 0
    assert figures["packets_in"] > 1000
    assert figures["throughput_kbit_s"] < 2 * WanShape().rate_kbit


def test_unshaped_link_is_not(bed: Bed) -> None:
    """The same measurement over a plain veth: the shaping above comes from the WAN alone."""
    a, b = bed.host("a"), bed.host("b")
    bed.link(a, "10.16.2.1", b, "10.16.2.2")
    echo = b.start([sys.executable, str(PROBE), "serve"])
    _, port = echo.address()
    pings = a.probe("ping", "10.16.2.2", str(port), "--count", "20", "--interval", "0.01")
    assert pings["received"] == 20
    assert max(pings["rtts"]) < 0.2


def test_topology_routes_with_stand_ins(bed: Bed) -> None:
    """The issue's network with echo programs in the nodes' places: the head-end reaches a meter
    two relays deep by IP; the chain meter3 -> relay2 -> relay -> WAN -> master (plain
    forwarders, as the relays will) carries TCP and UDP; the display reaches its meter only."""
    net = build_network(bed, meters=2, deep_meters=1)
    assert sorted(bed.hosts) == ["display", "gw", "headend", "master", "meter1", "meter2",
                                 "meter3", "relay", "relay2", "wan0"]
    master = net.master.start([sys.executable, str(PROBE), "serve"])
    _, m_port = master.address()
    relay = net.relay.start([sys.executable, str(PROBE), "serve",
                             "--forward", f"{net.master.ip}:{m_port}"])
    _, r_port = relay.address()
    relay2 = net.relay2.start([sys.executable, str(PROBE), "serve",
                               "--forward", f"{net.relay.address_on('10.16.3.0/24')}:{r_port}"])
    _, r2_port = relay2.address()
    via_relays = net.deep_meters[0].probe(
        "ping", net.relay2.address_on("10.16.4.0/24"), str(r2_port),
        "--count", "10", "--interval", "0.05")
    assert via_relays["received"] >= 1
    assert min(via_relays["rtts"]) >= 0.2  # it crossed the WAN
    bulk = net.deep_meters[0].probe("throughput", net.relay2.address_on("10.16.4.0/24"),
                                    str(r2_port), "--bytes", "4096")
    assert bulk["bytes"] == 4096
    echo = net.deep_meters[0].start([sys.executable, str(PROBE), "serve"])
    _, e_port = echo.address()
    direct = net.headend.probe("ping", net.deep_meters[0].ip, str(e_port),
                               "--count", "10", "--interval", "0.05")
    assert direct["received"] >= 1
    home = net.home_meter.start([sys.executable, str(PROBE), "serve"])
    _, h_port = home.address()
    local = net.display.probe("ping", "10.16.5.1", str(h_port), "--count", "5",
                              "--interval", "0.02")
    assert local["received"] == 5
    # The home LAN is not routed: the head-end cannot reach the display.
    unrouted = net.headend.run(sys.executable, str(PROBE), "ping", "10.16.5.10", "9",
                               "--count", "1", "--timeout", "0.5", check=False)
    assert '"received": 0' in unrouted.stdout, unrouted.stdout + unrouted.stderr


def test_wan_link_survives_junk_and_bounds_a_flood(bed: Bed) -> None:
    """Hostile frames straight onto the WAN, past the tbf (PACKET_QDISC_BYPASS): runts, random
    EtherTypes and bytes, full-size and broadcast frames, 3,000 of them at once. The link
    process holds at most --max-held frames (tail drop beyond), stays up, and the link still
    carries echoes afterwards."""
    a, b = bed.host("a"), bed.host("b")
    wan = bed.wan(a, "10.16.2.1", b, "10.16.2.2",
                  WanShape(loss=0.0, delay=0.3, jitter=0.0, max_held=64))
    junk = ("import os, random, socket\n"
            "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
            "s.setsockopt(263, 20, 1)  # SOL_PACKET, PACKET_QDISC_BYPASS\n"
            f"s.bind(({wan.a_if!r}, 0))\n"
            "for n in range(3000):\n"
            "    size = random.choice([14, 15, 60, 61, 1514, random.randint(14, 1514)])\n"
            "    try: s.send(b'\\xff' * 6 + os.urandom(size - 6))\n"
            "    except OSError: pass\n")
    a.run(sys.executable, "-c", junk)
    assert wan.link.proc.poll() is None, "\n".join(wan.link.lines)
    echo = b.start([sys.executable, str(PROBE), "serve"])
    _, port = echo.address()
    # The link still carries traffic: most echoes come back (not all: on a loaded machine the
    # probe's first echoes may still queue behind the flood's last held frames).
    pings = a.probe("ping", "10.16.2.2", str(port), "--count", "10", "--interval", "0.05")
    assert pings["received"] >= 7, pings
    wan.link.stop()
    counts = wan.link.wait_for(r"wanlink frames a>b (\d+) b>a (\d+) dropped (\d+)")
    assert int(counts.group(1)) > 0 and int(counts.group(3)) > 0, counts.group(0)


def test_bed_removes_everything_even_stubborn_processes() -> None:
    """A process that ignores Ctrl-C, a child it forked, and an exception in the test: the bed
    still kills them and removes its namespaces; a namespace left by a dead run is swept."""
    require_netbed()
    made: list[str] = []
    bed = Bed()
    with pytest.raises(RuntimeError, match="the test failed"):
        try:
            host = bed.host("stubborn")
            made.append(host.ns)
            stubborn = host.start([sys.executable, "-c",
                                   "import os, signal, time\n"
                                   "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                   "if os.fork() == 0: time.sleep(3600)\n"
                                   "print('ready', flush=True); time.sleep(3600)\n"])
            stubborn.wait_for("ready")
            raise RuntimeError("the test failed")
        finally:
            bed.close(grace=1.0)
    assert not set(made) & set(_namespaces())
    assert stubborn.proc.poll() is not None
    # A namespace named for a process that no longer exists is an aborted run's: swept.
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale = f"{PREFIX}{dead.pid}-dead-host"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in sweep_stale()
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)
    assert stale not in _namespaces()


def test_nothing_of_ours_in_the_root_namespace(bed: Bed) -> None:
    """Links are made straight inside the bed's namespaces: the caller's interfaces stay as
    they were."""
    def ours() -> set[str]:
        # Only names a bed gives: someone else's interfaces may come and go meanwhile.
        return {name for _, name in socket.if_nameindex()
                if re.fullmatch(r"(?:eth|wan|br|port|a|b)\d+", name)}

    before = ours()
    net = build_network(bed, meters=1, deep_meters=0, shape=None)
    assert net.relay2 is None and net.wan is None
    assert len(bed.hosts) == 6
    assert ours() == before
