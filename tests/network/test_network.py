"""The issue's C12.22 network on the test bed, every node started as a user would, in mode 2:

    headend host --+                                  +-- meter1 (fixed title) -- display
                   +-- gw ==== shaped WAN ==== relay --+-- meter2 (empty title)
    master relay --+                                  +-- relay2 -- meter3 (empty title)

Meters register through one or two levels of relays, meter2 and meter3 with the empty title (the
master relay assigns one); a client in the head-end's host reads each meter by AP title alone
through the master relay, Resolves and Traces it; a hostile node cannot take a title over; the
relay across the WAN stops (NETR/NETT within the time-outs) and comes back (the network heals
with no operator action). One network for the module (the WAN is slow: a read is about 0.4 s).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.network import nodes
from tests.network.netbed import Bed, HostRunning, Network, build_network, require_netbed

pytestmark = pytest.mark.network

MODE = 2
HOME_TITLE = f"{nodes.BASE}.8437"
ASK = Path(__file__).resolve().parent / "ask.py"
#: Seconds any one step may take before the test fails (the WAN retransmits; CI is slow).
STEP = 90.0


@dataclass
class Running:
    net: Network
    master: HostRunning
    relay: HostRunning
    relay2: HostRunning
    meters: dict[str, HostRunning]
    titles: dict[str, str]
    display: HostRunning
    tmp: Path


def ask(net: Network, called: str, service: str, arg: str | None = None,
        timeout: float = 10.0, host=None, to: str | None = None) -> dict:
    """One request from the head-end's host (or ``host``) to the master relay (or ``to``)."""
    host = host or net.headend
    args = [sys.executable, str(ASK), f"{to or net.master.ip}:{nodes.PORT}", called, service,
            *([arg] if arg else []), "--mode", str(MODE), "--timeout", str(timeout)]
    done = host.run(*args, timeout=timeout + 30)
    return json.loads(done.stdout.strip().splitlines()[-1])


def until(what: str, check, timeout: float = STEP, every: float = 0.5):
    """Poll ``check()`` until it returns something true; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; last: {last!r}")
        time.sleep(every)


def start_relay(net: Network) -> HostRunning:
    relay = nodes.relay(net.relay, net.master.ip, nodes.RELAY_TITLE, MODE,
                        "--forward-timeout", "8", "--reg-period", "60")
    relay.address(STEP)
    return relay


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    require_netbed()
    tmp = tmp_path_factory.mktemp("network")
    with Bed() as bed:
        net = build_network(bed, meters=2, deep_meters=1)
        master = nodes.master_relay(net.master, MODE, "--reg-delay", "2", "--reg-period", "60",
                                    "--forward-timeout", "8")
        master.address(STEP)
        relay = start_relay(net)
        relay2 = nodes.relay(net.relay2, net.relay.ip, nodes.RELAY2_TITLE, MODE,
                             "--forward-timeout", "8", "--reg-period", "60")
        relay2.address(STEP)
        display = net.display.c1222(
            "ihd", "--listen", f"{net.display.ip}:1155", "--http", f"{net.display.ip}:0",
            "--state-dir", str(tmp / "ihd"), "--meter-ap-title", HOME_TITLE,
            "--security-mode", str(MODE), "--key", nodes.KEY, cwd=tmp)
        display.address(STEP)
        meters = {}
        for host in [*net.meters, *net.deep_meters]:
            state = tmp / host.name
            state.mkdir()
            upstream = net.relay2.ip if host in net.deep_meters else net.relay.ip
            if host is net.home_meter:
                meters[host.name] = nodes.meter(host, upstream, state, MODE, "--ihd",
                                                f"{net.display.ip}:1155", title=HOME_TITLE)
            else:
                meters[host.name] = nodes.meter(host, upstream, state, MODE)
        titles = {net.home_meter.name: HOME_TITLE}
        for name, meter in meters.items():
            meter.address(STEP)
            if name not in titles:
                titles[name] = meter.wait_for(nodes.ASSIGNED, STEP).group(1)
        yield Running(net, master, relay, relay2, meters, titles, display, tmp)


def test_titles_are_assigned_through_one_and_two_relays(running: Running) -> None:
    """meter2 (behind the relay) and meter3 (behind relay2, behind the relay) asked with the
    empty title; each got its own from the master relay's branch."""
    assigned = [running.titles["meter2"], running.titles["meter3"]]
    assert len(set(assigned)) == 2
    for title in assigned:
        assert title.startswith(nodes.ASSIGN_BRANCH + ".")


def test_head_end_reads_every_meter_by_title(running: Running) -> None:
    """Security + Full Read of Table 28 in mode 2, to the master relay, called AP title = the
    meter's: the relays route it over the WAN (and one more LAN for meter3)."""
    for name, title in running.titles.items():
        answer = until(f"a read of {name}",
                       lambda: (a := ask(running.net, title, "read", "28"))
                       .get("codes") == ["OK", "OK"] and a)
        assert answer["bytes"] > 0
        assert answer["seconds"] >= 0.2  # two WAN crossings at least 100 ms each


def test_resolve_gives_each_meters_native_address(running: Running) -> None:
    net = running.net
    hosts = {h.name: h for h in [*net.meters, *net.deep_meters]}
    for name, title in running.titles.items():
        answer = ask(net, nodes.MASTER_TITLE, "resolve", title)
        assert answer["codes"] == ["OK"], answer
        assert answer["native"] == f"{hosts[name].ip}:{nodes.PORT}"


def test_trace_gives_the_path(running: Running) -> None:
    """Relays on the path from the requester's side outward: the master, the relay, relay2."""
    net = running.net
    one = ask(net, nodes.MASTER_TITLE, "trace", running.titles["meter2"])
    assert one["codes"] == ["OK"], one
    assert one["path"] == [nodes.MASTER_TITLE, nodes.RELAY_TITLE]
    two = ask(net, nodes.MASTER_TITLE, "trace", running.titles["meter3"])
    assert two["codes"] == ["OK"], two
    assert two["path"] == [nodes.MASTER_TITLE, nodes.RELAY_TITLE, nodes.RELAY2_TITLE]


def test_unknown_title_is_uat(running: Running) -> None:
    answer = ask(running.net, f"{nodes.ASSIGN_BRANCH}.999999", "read", "28")
    assert answer.get("codes") == ["UAT"], answer


def test_display_is_fed_on_the_home_lan(running: Running) -> None:
    """The home meter, registered through the relay, still feeds its display on the home LAN."""
    _, port = running.display.wait_for(r"http (\S+):(\d+)", STEP).groups()
    script = ("import json, urllib.request\n"
              f"print(urllib.request.urlopen('http://{running.net.display.ip}:{port}/api/live',"
              " timeout=5).read().decode())")

    def live() -> dict | None:
        body = json.loads(running.net.display.run(sys.executable, "-c", script).stdout)
        return body if body.get("sample") else None

    assert until("a live sample on the display", live)["stale"] is False


def test_hostile_node_cannot_take_a_title(running: Running) -> None:
    """A node on the field LAN (meter2's host, another address than meter1's) with the network's
    key registers meter1's title through the relay: refused; meter1's route is unchanged."""
    net = running.net
    victim = running.titles["meter1"]
    attacker = net.meters[1]
    answer = ask(net, nodes.MASTER_TITLE, "register", f"{victim}:{attacker.ip}",
                 host=attacker, to=net.relay.ip)
    assert "error" in answer or answer["codes"] != ["OK"], answer
    resolved = ask(net, nodes.MASTER_TITLE, "resolve", victim)
    assert resolved["native"] == f"{net.home_meter.ip}:{nodes.PORT}"
    assert ask(net, victim, "read", "28")["codes"] == ["OK", "OK"]


def test_relay_stops_and_comes_back(running: Running) -> None:
    """Stop the relay across the WAN (the middle of master -> relay -> relay2): reads of the
    meters behind it get NETR or NETT from the master within its forward time-out (or no
    answer within the client's); start it again: relays and meters re-register by themselves
    and reads resume. Runs last (it changes the network)."""
    net = running.net
    assert running.relay.stop() is not None
    for title in (running.titles["meter2"], running.titles["meter3"]):
        started = time.monotonic()
        answer = ask(net, title, "read", "28", timeout=20)
        assert answer.get("codes") in (["NETR"], ["NETT"]), answer
        assert time.monotonic() - started < 20 + 10
    running.relay = start_relay(net)
    for name in ("meter2", "meter3", "meter1"):
        title = running.titles[name]
        until(f"{name} readable again", lambda: ask(net, title, "read", "28", timeout=10)
              .get("codes") == ["OK", "OK"], timeout=180, every=2)
