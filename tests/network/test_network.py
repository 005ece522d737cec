"""The issue's C12.22 network on the test bed, every node started as a user would, in mode 2:

    headend host --+                                  +-- meter1 (fixed title) -- display
                   +-- gw ==== shaped WAN ==== relay --+-- meter2 (empty title)
    master relay --+                                  +-- relay2 -- meter3 (empty title)

Meters register through one or two levels of relays, meter2 and meter3 with the empty title (the
master relay assigns one); the head-end, a notification host of the master relay, learns them and
its collector reads them through the relays, and shows them behind their relays; a client in the
head-end's host reads each meter by AP title alone through the master relay, Resolves and Traces
it; a hostile node cannot take a title over; the
relay across the WAN stops (NETR/NETT within the time-outs) and comes back (the network heals
with no operator action). One network for the module (the WAN is slow: a read is about 0.4 s).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop.tshark import EXPERT_ERROR, require_tshark, tshark_fields
from tests.network import nodes
from tests.network.netbed import Bed, HostRunning, Network, build_network, require_netbed

pytestmark = pytest.mark.network

MODE = 2
HOME_TITLE = f"{nodes.BASE}.8437"
ASK = Path(__file__).resolve().parent / "ask.py"
#: What Wireshark's C12.22 dissector says about each segment of the 2008 format (its grammar
#: has no A3: tests/interop/test_segments_tshark.py), all at Warning severity.
SEGMENT_COMPLAINTS = (
    "BER Error: Wrong field in SEQUENCE: expected class:CONTEXT(2) tag:8 but found "
    "class:CONTEXT(2) tag:3",
    "BER Error: Wrong field in SEQUENCE: expected class:CONTEXT(2) tag:30 but found "
    "class:CONTEXT(2) tag:6",
    "BER Error: This field lies beyond the end of the known sequence definition.",
)
#: Wireshark's PI_WARN (below it: notes and chat, such as TCP's SYN).
EXPERT_WARNING = 0x00600000
#: Seconds any one step may take before the test fails (the WAN retransmits; CI is slow).
STEP = 90.0


@dataclass
class Running:
    net: Network
    master: HostRunning
    relay: HostRunning
    relay2: HostRunning
    headend: HostRunning
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


def http(net: Network, url: str, method: str = "GET", body: dict | None = None) -> dict:
    """A request to the head-end's REST API, from the head-end's host (its only address)."""
    # with the tests' token (tests/auth.py), which the head-end's process provisions
    script = ("import json, os, sys, urllib.request, urllib.error\n"
              "req = urllib.request.Request(sys.argv[1], method=sys.argv[2], data=None if "
              "sys.argv[3] == 'null' else sys.argv[3].encode(), headers={'content-type': "
              "'application/json', 'authorization': 'Bearer ' + "
              "os.environ['C1222_HEADEND_ADMIN_TOKEN']})\n"
              "try:\n"
              "    print(urllib.request.urlopen(req, timeout=60).read().decode())\n"
              "except urllib.error.HTTPError as e:\n"
              "    print(json.dumps({'status': e.code, 'body': e.read().decode()}))\n")
    done = net.headend.run(sys.executable, "-c", script, url, method, json.dumps(body),
                           timeout=90)
    return json.loads(done.stdout)


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
        # The head-end first: it hears of every node the master relay registers after it.
        headend = nodes.headend(net.headend, net.master.ip, tmp, MODE,
                                "--collect-interval", "5", "--log-interval", "0")
        headend.address(STEP)
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
        yield Running(net, master, relay, relay2, headend, meters, titles, display, tmp)


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


def console(running: Running) -> str:
    host, port = running.headend.wait_for(r"console at http (\S+):(\d+)", STEP).groups()
    return f"http://{host}:{port}"


def test_head_end_learns_the_meters_and_collects_through_the_relays(running: Running) -> None:
    """The master relay notifies the head-end of each registration; the head-end's collector
    reads every meter by title through the master relay and stores its present values."""
    base = console(running)
    for name, title in running.titles.items():
        url = f"{base}/api/nodes/{title}/readings?kind=present&limit=1"

        def readings() -> list | None:
            got = http(running.net, url)
            return got if isinstance(got, list) and got else None

        stored = until(f"present values of {name} at the head-end", readings)
        assert stored[0]["kind"] == "present", stored


def test_head_end_reads_by_title_and_shows_the_network(running: Running) -> None:
    """A read from the console's API, and the network view: each meter behind the last relay
    of its traced path."""
    base = console(running)
    meter3 = running.titles["meter3"]
    read = http(running.net, f"{base}/api/nodes/{meter3}/services/read", "POST", {"table": 28})
    assert read.get("response_codes", [None])[-1] == "ok", read
    traced = http(running.net, f"{base}/api/network/nodes/{meter3}/trace", "POST")
    assert traced.get("path") == [nodes.MASTER_TITLE, nodes.RELAY_TITLE, nodes.RELAY2_TITLE], \
        traced
    view = http(running.net, f"{base}/api/network")
    assert view["master_relay"]["ap_title"] == nodes.MASTER_TITLE, view
    behind = {r["ap_title"]: [n["ap_title"] for n in r["nodes"]] for r in view["relays"]}
    assert meter3 in behind.get(nodes.RELAY2_TITLE, []), view


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
        return body if body.get("sample") and body.get("stale") is False else None

    assert until("a fresh live sample on the display", live)["sample"]["voltage"] > 0


def conformance(running: Running, name: str, *args: str, ok: tuple[int, ...] = (0,)) -> dict:
    """``c1222 conformance`` run in the head-end's host, as an operator would; its report."""
    report = running.tmp / f"{name}.json"
    done = running.net.headend.run(sys.executable, "-m", "c1222.cli", "conformance",
                                   "--security-mode", str(MODE), "--key", nodes.KEY,
                                   "--password", "PASSWORD", "--json", str(report), *args,
                                   check=False, timeout=600)
    assert done.returncode in ok, done.stdout + done.stderr
    return json.loads(report.read_text())


def verdicts(report: dict) -> dict[str, str]:
    return {case["case"]: case["verdict"] for case in report["cases"]}


#: The 13 services of the issue, as the conformance report names them (Read and Write by
#: their forms).
SERVICES = {"Identify", "Full read", "Partial read offset", "Partial read index", "Default read",
            "Full write", "Partial write offset", "Partial write index", "Logon", "Security",
            "Logoff", "Terminate", "Disconnect", "Wait", "Register", "Deregister", "Resolve",
            "Trace"}


def test_conformance_of_a_meter_two_relays_away(running: Running) -> None:
    """Against meter3, reached by its title through the master relay, the WAN, the relay and
    relay2, the tester a notification host of the master relay: every case PASS — all 13
    services, Register (the master relay's notification of meter3), Deregister (meter3 answers
    OK and registers again), Resolve and Trace (asked of the master relay) included, and a
    request in 128-byte segments across the relays."""
    report = conformance(running, "meter3", "--master-relay",
                         f"{running.net.master.ip}:{nodes.PORT}",
                         "--called-ap-title", running.titles["meter3"], "--deregister",
                         "--segment-size", "128", "--register-timeout", "120")
    not_passed = [(c["case"], c["verdict"], c["reason"]) for c in report["cases"]
                  if c["verdict"] != "PASS"]
    assert not not_passed, not_passed
    assert {c["service"] for c in report["cases"]} == SERVICES
    assert report["called_ap_title"] == running.titles["meter3"]
    trace = next(c for c in report["cases"] if c["case"] == "trace")
    assert nodes.RELAY2_TITLE in trace["reason"], trace


def test_conformance_of_the_relay_itself(running: Running) -> None:
    """The relay across the WAN as the target, by its own title, judged as a relay: nothing
    FAILs; its Identify, reads of Table 0, session services, Resolve and Trace PASS (its reads
    go without the meters' operator password; its refusal of Security and Deregister is what
    a relay may answer: conformance rules RELAY_NEED_NOT_SERVE)."""
    report = conformance(running, "relay", f"{running.net.relay.ip}:{nodes.PORT}",
                         "--called-ap-title", nodes.RELAY_TITLE)
    got = verdicts(report)
    assert "FAIL" not in got.values(), report["cases"]
    for case in ("identify", "full_read", "partial_read_offset", "logon", "wait", "terminate",
                 "resolve", "trace", "unknown_ap_title"):
        assert got[case] == "PASS", (case, got)
    assert nodes.RELAY_TITLE in next(c for c in report["cases"] if c["case"] == "trace")["reason"]


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


def test_conformance_in_modes_0_and_2_behind_a_relay(bed: Bed, tmp_path: Path) -> None:
    """A network of its own, in mode 0 (the meter accepts 0, 1 and 2) and without shaping:
    `c1222 conformance --security-mode 0,2` against a meter behind the relay, by its assigned
    title through the master relay (the tester its notification host); every case PASS in
    both modes, all 13 services (Register from the notification, Deregister and the meter
    registering again, segments across the relays)."""
    net = build_network(bed, meters=1, deep_meters=0, shape=None)
    nodes.master_relay(net.master, 0, "--reg-delay", "1").address(STEP)
    nodes.relay(net.relay, net.master.ip, nodes.RELAY_TITLE, 0).address(STEP)
    meter = nodes.meter(net.meters[0], net.relay.ip, tmp_path, 0)
    title = meter.wait_for(nodes.ASSIGNED, STEP).group(1)
    report = tmp_path / "modes.json"
    done = net.headend.run(sys.executable, "-m", "c1222.cli", "conformance", "--security-mode",
                           "0,2", "--key", nodes.KEY, "--password", "PASSWORD", "--json",
                           str(report), "--master-relay", f"{net.master.ip}:{nodes.PORT}",
                           "--called-ap-title", title, "--deregister", "--segment-size", "128",
                           "--register-timeout", "60", check=False, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    cases = json.loads(report.read_text())["cases"]
    assert {c["mode"] for c in cases} >= {0, 2}
    left = [(c["case"], c["mode"], c["verdict"]) for c in cases if c["verdict"] != "PASS"]
    assert not left, left
    assert {c["service"] for c in cases} == SERVICES
    for mode in (0, 2):
        assert {c["case"] for c in cases if c["mode"] == mode and c["verdict"] == "PASS"} >= \
            {"resolve", "trace", "identify", "full_read", "full_write", "logon"}


def test_table_64_crosses_512_byte_links_whole(bed: Bed, tmp_path: Path) -> None:
    """The meter and the relay send at most 512-byte APDUs on their links (larger ones as
    segments, 2008 format); Table 64, tens of kilobytes, read by title from the head-end's
    host over the shaped WAN in mode 2 arrives whole and its MAC verifies (ask.py checks it).
    On the field LAN's wire (dumpcap on the relay's bridge) tshark dissects every APDU as
    C12.22 with no expert error; a segment draws only Wireshark's warnings about A3."""
    from c1222.cli.relay import relay as relay_command

    if not {"segment_size", "max_apdu_size"} <= {p.name for p in relay_command.params}:
        pytest.skip("the relay has no --segment-size/--max-apdu-size in this tree yet")
    require_tshark()
    net = build_network(bed, meters=1, deep_meters=0)
    big = ("--max-apdu-size", "65535")
    nodes.master_relay(net.master, MODE, "--reg-delay", "1", *big).address(STEP)
    nodes.relay(net.relay, net.master.ip, nodes.RELAY_TITLE, MODE, "--segment-size", "512",
                *big).address(STEP)
    nodes.meter(net.meters[0], net.relay.ip, tmp_path / "meter", MODE, "--segment-size", "512",
                *big, title=HOME_TITLE).address(STEP)
    until("the meter routed", lambda: ask(net, HOME_TITLE, "read", "28").get("codes")
          == ["OK", "OK"], every=1)
    # The wire of the read alone (tshark cannot verify the Register a meter sends before it
    # knows the master relay's title, with no called AP title: the lead's report says more).
    wire = tmp_path / "field-lan.pcap"
    dumpcap = net.relay.start(["dumpcap", "-i", "br0", "-f", "tcp port 1153", "-w", str(wire)])
    dumpcap.wait_for("Capturing on", STEP)
    answer = ask(net, HOME_TITLE, "read", "64", timeout=120)
    assert answer.get("codes") == ["OK", "OK"], answer
    assert answer["bytes"] > 20 * 512, answer
    dumpcap.stop()
    key_id, key_hex = nodes.KEY.split(":")
    rows = tshark_fields(wire, ["c1222.called_AP_title", "_ws.expert.severity",
                                "_ws.expert.message"],
                         keys={int(key_id): bytes.fromhex(key_hex)})
    apdus = sum(len(row["c1222.called_AP_title"]) for row in rows)
    complaints = [message for row in rows for severity, message in
                  zip(row["_ws.expert.severity"], row["_ws.expert.message"], strict=True)
                  if int(severity, 0) >= EXPERT_WARNING]  # not TCP's Chat notes
    # Every APDU on the wire is dissected as C12.22; segments draw Wireshark's four warnings
    # about the 2008 format's A3 (its grammar has no [3]) and nothing else, never an error.
    assert all(int(s, 0) < EXPERT_ERROR for row in rows for s in row["_ws.expert.severity"])
    assert set(complaints) <= set(SEGMENT_COMPLAINTS), set(complaints)
    assert len(complaints) % 4 == 0
    assert apdus > len(complaints) // 4 > answer["bytes"] // 512, (apdus, len(complaints))
