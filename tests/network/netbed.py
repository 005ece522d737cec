"""A multi-host test bed in Linux network namespaces (docs/network-testbed.md).

Hosts are network namespaces, links are veth pairs (a bridge in one host makes a LAN of several),
and a shaped WAN puts a namespace with a delaying layer-2 forwarder (tests/network/wanlink.py)
between two hosts, with a tbf rate limit on both ends and random loss from iptables. Commands run
in a host with ``ip netns exec``; a ``c1222`` command started there is a
:class:`tests.e2e.procs.Running` like any other.

Everything a bed makes is named ``c1222nb-<pid>-<token>-<host>``: beds of parallel runs never
collide, a bed removes what it made (processes first, then namespaces; the veths and bridges go
with their namespaces), and :func:`sweep_stale` removes what an aborted run left (namespaces whose
creating process is gone). Nothing is made in the caller's own namespace.

Importable by the tests and by benchmarks/network.py (``from tests.network.netbed import ...``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.procs import C1222, Running

#: Every namespace a bed makes starts with this (and nothing else of ours does).
PREFIX = "c1222nb-"
HERE = Path(__file__).resolve().parent
WANLINK = HERE / "wanlink.py"
PROBE = HERE / "probe.py"
#: Seconds one ``ip``/``tc``/``iptables`` command may take.
COMMAND_TIMEOUT = 30.0


class NetbedError(RuntimeError):
    """A namespace, link, address or route could not be made."""


# --- can this machine make a bed? ---------------------------------------------------------

def _missing(reason: str) -> None:
    """Skip, or fail under C1222_REQUIRE_ALL=1 (CI runs as root with the tools installed)."""
    if os.environ.get("C1222_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (C1222_REQUIRE_ALL=1 requires it)", pytrace=False)
    pytest.skip(reason)


def unavailable() -> str | None:
    """Why no bed can be made here (None when one can): root, ip, tc, iptables, namespaces."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the tests as root)"
    for tool in ("ip", "tc", "iptables"):
        if shutil.which(tool) is None:
            return (f"{tool} is not installed (Debian: apt-get install iproute2 iptables; "
                    "`make test` does it)")
    probe = f"{PREFIX}{os.getpid()}-check"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    try:
        table = subprocess.run(["ip", "netns", "exec", probe, "iptables", "-t", "raw", "-L", "-n"],
                               capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if table.returncode != 0:
            return f"iptables does not work in a namespace: {table.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def require_netbed() -> None:
    """Skip the test (fail under C1222_REQUIRE_ALL=1) when no bed can be made here."""
    reason = unavailable()
    if reason is not None:
        _missing(reason)
    sweep_stale()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]


def _remove_namespace(ns: str) -> None:
    """Kill what still runs in a namespace of ours (it was started there by a bed), delete it."""
    for _ in range(50):
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        alive = [int(p) for p in pids.stdout.split() if p.isdigit()]
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def sweep_stale() -> list[str]:
    """Remove the namespaces of beds whose process is gone (an aborted run); return their names."""
    swept = []
    for ns in _namespaces():
        if not ns.startswith(PREFIX):
            continue
        pid = ns[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove_namespace(ns)
            swept.append(ns)
    return swept


# --- processes in a host ------------------------------------------------------------------

class HostRunning(Running):
    """A command running in a host's namespace; output collected as tests.e2e.procs.Running."""

    def __init__(self, host: Host, command: Sequence[str], *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        # Running's own __init__ starts `c1222` here; this one starts any command over there.
        self.host = host
        self.args = list(command)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", host.ns, *self.args], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


# --- hosts, links, the bed ----------------------------------------------------------------

@dataclass(eq=False)
class Host:
    """One host: a network namespace, its interfaces and their addresses."""

    bed: Bed
    name: str
    ns: str
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def ip(self) -> str:
        """The host's first address (the one its peers use)."""
        return next(iter(self.addresses.values()))

    def address_on(self, network: str) -> str:
        """The host's address inside ``network`` (e.g. "10.16.3.0/24")."""
        net = ipaddress.ip_network(network)
        for ip in self.addresses.values():
            if ipaddress.ip_address(ip) in net:
                return ip
        raise KeyError(f"{self.name} has no address in {network}")

    def run(self, *args: str, check: bool = True,
            timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a command in this host and wait for it."""
        done = subprocess.run(["ip", "netns", "exec", self.ns, *args], capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise NetbedError(f"{self.name}: {' '.join(args)}: {done.stderr.strip()}")
        return done

    def start(self, command: Sequence[str], *, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> HostRunning:
        """Start a command in this host; the bed stops it when it closes."""
        running = HostRunning(self, command, cwd=cwd, env=env)
        self.bed.processes.append(running)
        return running

    def c1222(self, *args: str, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> HostRunning:
        """Start ``c1222 ARGS`` in this host, as a user would there."""
        return self.start([*C1222, *args], cwd=cwd, env=env)

    def probe(self, *args: str, timeout: float = 120.0) -> dict:
        """Run tests/network/probe.py ARGS here and return the JSON it prints."""
        done = self.run(sys.executable, str(PROBE), *args, timeout=timeout)
        return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class WanShape:
    """The shaped WAN: the reference design's CDMA2000 1xRTT link (c1222-network.md)."""

    #: Mean one-way delay and its spread (uniform in delay +- jitter), seconds.
    delay: float = 0.150
    jitter: float = 0.050
    #: Probability that a packet is dropped, each way (iptables statistic).
    loss: float = 0.01
    #: Rate each way (tbf on both ends), kbit/s.
    rate_kbit: int = 150
    #: Seed of the delay draws (None: a new draw every run).
    seed: int | None = None
    #: Frames the link process holds each way before it drops (wanlink.MAX_HELD by default).
    max_held: int | None = None


@dataclass
class Wan:
    """A shaped WAN between two hosts, through a middle namespace running the link process."""

    a: Host
    b: Host
    middle: Host
    shape: WanShape
    link: HostRunning
    #: The WAN interfaces of ``a`` and ``b``.
    a_if: str
    b_if: str

    @property
    def b_ip(self) -> str:
        """``b``'s address on the WAN."""
        return self.b.addresses[self.b_if]

    def drop_counters(self) -> dict[str, tuple[int, int]]:
        """Packets (seen, dropped) entering each end from the WAN, from the iptables counters."""
        counters = {}
        for host in (self.a, self.b):
            listing = host.run("iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-n", "-x")
            rows = [line.split() for line in listing.stdout.splitlines()[2:] if line.strip()]
            seen = sum(int(r[0]) for r in rows if r[2] != "DROP")
            dropped = sum(int(r[0]) for r in rows if r[2] == "DROP")
            counters[host.name] = (seen, dropped)
        return counters


class Bed:
    """Hosts and links made for one test; ``with Bed() as bed:`` removes them at the end."""

    def __init__(self) -> None:
        self.token = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.hosts: dict[str, Host] = {}
        self.processes: list[HostRunning] = []
        self._interfaces: dict[str, int] = {}

    def __enter__(self) -> Bed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, name: str, *, forward: bool = False) -> Host:
        """A new host (namespace) with loopback up; ``forward`` makes it route (ip_forward)."""
        if name in self.hosts:
            raise NetbedError(f"host {name} already exists")
        ns = f"{PREFIX}{self.token}-{name}"
        _ip("netns", "add", ns)
        host = Host(self, name, ns)
        self.hosts[name] = host
        host.run("ip", "link", "set", "lo", "up")
        if forward:
            # /proc/sys/net is the namespace's own (no sysctl binary needed).
            host.run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        return host

    def _ifname(self, host: Host, stem: str) -> str:
        key = f"{host.name}/{stem}"
        count = self._interfaces.get(key, 0)
        self._interfaces[key] = count + 1
        return f"{stem}{count}"

    def _veth(self, a: Host, a_stem: str, b: Host, b_stem: str) -> tuple[str, str]:
        """A veth pair made straight in both namespaces (nothing in ours, even for a moment)."""
        a_if, b_if = self._ifname(a, a_stem), self._ifname(b, b_stem)
        _ip("link", "add", "name", a_if, "netns", a.ns, "type", "veth",
            "peer", "name", b_if, "netns", b.ns)
        return a_if, b_if

    @staticmethod
    def _address(host: Host, ifname: str, ip: str, prefix: int) -> None:
        host.run("ip", "addr", "add", f"{ip}/{prefix}", "dev", ifname)
        host.run("ip", "link", "set", ifname, "up")
        host.addresses[ifname] = ip

    def link(self, a: Host, a_ip: str, b: Host, b_ip: str, prefix: int = 24) -> tuple[str, str]:
        """A point-to-point link between two hosts; returns the two interface names."""
        a_if, b_if = self._veth(a, "eth", b, "eth")
        self._address(a, a_if, a_ip, prefix)
        self._address(b, b_if, b_ip, prefix)
        return a_if, b_if

    def lan(self, gateway: Host, network: str, members: dict[Host, str]) -> str:
        """A LAN: a bridge in ``gateway`` (which takes the network's first address) and one veth
        per member to it; each member gets its address and a default route via the gateway
        unless it already has one. Returns the gateway's address."""
        net = ipaddress.ip_network(network)
        gw_ip = str(next(net.hosts()))
        bridge = self._ifname(gateway, "br")
        gateway.run("ip", "link", "add", bridge, "type", "bridge")
        self._address(gateway, bridge, gw_ip, net.prefixlen)
        for member, ip in members.items():
            m_if, g_if = self._veth(member, "eth", gateway, "port")
            gateway.run("ip", "link", "set", g_if, "master", bridge)
            gateway.run("ip", "link", "set", g_if, "up")
            self._address(member, m_if, ip, net.prefixlen)
            if not member.run("ip", "route", "show", "default").stdout.strip():
                member.run("ip", "route", "add", "default", "via", gw_ip)
        return gw_ip

    @staticmethod
    def route(host: Host, network: str, via: str) -> None:
        """A static route (``default`` or a network) in ``host``."""
        host.run("ip", "route", "replace", network, "via", via)

    def wan(self, a: Host, a_ip: str, b: Host, b_ip: str, shape: WanShape = WanShape(),
            prefix: int = 24) -> Wan:
        """A shaped WAN between ``a`` and ``b`` (both get an interface ``wanN``).

        Rate: tbf on both ends' egress. Loss: an iptables DROP with ``statistic --mode random``
        on what enters each end from the WAN (after a rule that only counts). Delay: the middle
        namespace's link process (wanlink.py). Offloads are off on both ends, so the frames the
        link process forwards are whole and carry real checksums."""
        middle = self.host(f"wan{len([h for h in self.hosts if h.startswith('wan')])}")
        a_if, ma_if = self._veth(a, "wan", middle, "a")
        mb_if, b_if = self._veth(middle, "b", b, "wan")
        for m_if in (ma_if, mb_if):
            middle.run("ip", "link", "set", m_if, "up")
        for host, ifname, ip in ((a, a_if, a_ip), (b, b_if, b_ip)):
            self._address(host, ifname, ip, prefix)
            host.run(sys.executable, str(PROBE), "offloads-off", ifname)
            # burst: two full frames; latency: the queue a cellular modem keeps (about 1 s).
            host.run("tc", "qdisc", "replace", "dev", ifname, "root", "tbf",
                     "rate", f"{shape.rate_kbit}kbit", "burst", "3000", "latency", "1s")
            host.run("iptables", "-t", "raw", "-A", "PREROUTING", "-i", ifname)
            if shape.loss > 0:
                host.run("iptables", "-t", "raw", "-A", "PREROUTING", "-i", ifname,
                         "-m", "statistic", "--mode", "random",
                         "--probability", f"{shape.loss}", "-j", "DROP")
        # A cellular link is point to point (PPP): no ARP crosses it. Fixed neighbour entries
        # keep ARP's own round trips (and their stalls) out of the measurements.
        for host, ifname, peer, peer_if in ((a, a_if, b, b_if), (b, b_if, a, a_if)):
            shown = json.loads(peer.run("ip", "-j", "link", "show", peer_if).stdout)
            host.run("ip", "neigh", "replace", peer.addresses[peer_if], "lladdr",
                     shown[0]["address"], "dev", ifname, "nud", "permanent")
        command = [sys.executable, str(WANLINK), ma_if, mb_if,
                   "--delay-ms", f"{shape.delay * 1000}", "--jitter-ms", f"{shape.jitter * 1000}"]
        if shape.seed is not None:
            command += ["--seed", str(shape.seed)]
        if shape.max_held is not None:
            command += ["--max-held", str(shape.max_held)]
        link = middle.start(command)
        link.wait_for("wanlink ready", timeout=30)
        return Wan(a, b, middle, shape, link, a_if, b_if)

    def close(self, grace: float = 10.0) -> None:
        """Stop every process (Ctrl-C; killed after ``grace`` seconds), kill what they left
        running in the bed's namespaces, then remove the namespaces."""
        for running in reversed(self.processes):
            if running.proc.poll() is None:
                running.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace
        for running in reversed(self.processes):
            try:
                running.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                running.proc.kill()
                running.proc.wait()
        for host in reversed(list(self.hosts.values())):
            _remove_namespace(host.ns)
        # Children that kept a process's output open are gone now: its reader ends.
        for running in self.processes:
            running._reader.join(5)
        self.hosts.clear()


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if done.returncode != 0:
        raise NetbedError(f"ip {' '.join(args)}: {done.stderr.strip()}")


# --- the network ------------------------------------------------------------------

#: The address plan (docs/network-testbed.md).
CORE_LAN = "10.16.1.0/24"
WAN_NET = "10.16.2.0/24"
METER_LAN = "10.16.3.0/24"
DEEP_LAN = "10.16.4.0/24"
HOME_LAN = "10.16.5.0/24"


@dataclass
class Network:
    """The hosts of the issue's network, by role."""

    bed: Bed
    headend: Host
    master: Host
    gateway: Host
    relay: Host
    meters: list[Host]
    relay2: Host | None
    deep_meters: list[Host]
    display: Host
    wan: Wan | None

    @property
    def home_meter(self) -> Host:
        """The meter that feeds the display (the first meter behind the relay)."""
        return self.meters[0]


def build_network(bed: Bed, *, meters: int = 2, deep_meters: int = 1,
                  shape: WanShape | None = WanShape()) -> Network:
    """The issue's network: head-end and master relay on the utility's LAN behind a gateway; the
    relay over the shaped WAN (``shape``; None: a plain link); meters on the relay's LAN; a
    second-level relay on that LAN with ``deep_meters`` behind it (none when 0); the display on
    the home LAN of the first meter. Every host can reach every other by IP routing (except the
    home LAN, which is not routed), as in a utility network where relays are also routers."""
    gateway = bed.host("gw", forward=True)
    headend = bed.host("headend")
    master = bed.host("master")
    bed.lan(gateway, CORE_LAN, {headend: "10.16.1.10", master: "10.16.1.20"})
    relay = bed.host("relay", forward=True)
    if shape is None:
        bed.link(gateway, "10.16.2.1", relay, "10.16.2.2")
        wan = None
    else:
        wan = bed.wan(gateway, "10.16.2.1", relay, "10.16.2.2", shape)
    bed.route(relay, "default", "10.16.2.1")
    meter_hosts = [bed.host(f"meter{i + 1}") for i in range(meters)]
    relay2 = bed.host("relay2", forward=True) if deep_meters else None
    members = {m: f"10.16.3.{11 + i}" for i, m in enumerate(meter_hosts)}
    if relay2 is not None:
        members[relay2] = "10.16.3.2"
    bed.lan(relay, METER_LAN, members)
    bed.route(gateway, METER_LAN, "10.16.2.2")
    deep = []
    if relay2 is not None:
        deep = [bed.host(f"meter{meters + i + 1}") for i in range(deep_meters)]
        bed.lan(relay2, DEEP_LAN, {m: f"10.16.4.{11 + i}" for i, m in enumerate(deep)})
        bed.route(relay, DEEP_LAN, "10.16.3.2")
        bed.route(gateway, DEEP_LAN, "10.16.2.2")
    display = bed.host("display")
    bed.link(meter_hosts[0], "10.16.5.1", display, "10.16.5.10")
    return Network(bed, headend, master, gateway, relay, meter_hosts, relay2, deep, display, wan)


# --- measuring a link ---------------------------------------------------------------------

def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_wan(wan: Wan, *, probes: int = 600, interval: float = 0.008,
                transfer: int = 32768) -> dict:
    """RTT, loss and throughput of a shaped WAN, measured from end ``a`` to an echo at ``b``.

    ``probes`` UDP echoes ``interval`` apart (RTT p50/p99, round trips lost); ``transfer`` bytes
    through a TCP echo (throughput each way, TCP's own start and retransmissions included); the
    iptables counters of both ends (packets that entered, packets dropped)."""
    before = wan.drop_counters()
    echo = wan.b.start([sys.executable, str(PROBE), "serve"])
    try:
        _, port = echo.address()
        pings = wan.a.probe("ping", wan.b_ip, str(port), "--count", str(probes),
                            "--interval", str(interval), "--timeout", "2")
        bulk = wan.a.probe("throughput", wan.b_ip, str(port), "--bytes", str(transfer))
    finally:
        echo.stop()
    after = wan.drop_counters()
    seen = sum(after[h][0] - before[h][0] for h in after)
    dropped = sum(after[h][1] - before[h][1] for h in after)
    rtts = pings["rtts"]
    return {
        "probes": pings["sent"], "answered": pings["received"],
        "round_trip_loss": 1 - pings["received"] / pings["sent"],
        "rtt_min": min(rtts), "rtt_p50": _percentile(rtts, 0.50),
        "rtt_p99": _percentile(rtts, 0.99), "rtt_max": max(rtts),
        "packets_in": seen, "packets_dropped": dropped,
        "packet_loss": dropped / seen if seen else 0.0,
        "transfer_bytes": bulk["bytes"], "transfer_seconds": bulk["seconds"],
        "throughput_kbit_s": bulk["kbit_s"],
    }
