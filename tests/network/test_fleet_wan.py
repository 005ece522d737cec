"""`c1222 fleet --relay` behind `c1222 relay`, across the shaped WAN from the master relay and
the head-end (issue 12: "through the shaped WAN and a relay"; benchmarks/network.py `--part
fleet` measures 1,000 meters):

    headend host --+                                  +-- fleet host: 100 meters, 2 workers
                   +-- gw ==== shaped WAN ==== relay --+   (ports 1153 and 1154)
    master relay --+

Every meter registers with the empty title through the relay (over TCP, a connection per
meter, or over UDP, its worker's socket), the master relay assigns each a title of its branch
and tells the head-end, and the head-end's collector reads every one of them through the
master relay, the WAN and the relay (mode 2). No timing is asserted: each step has a generous
time-out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.network import nodes
from tests.network.netbed import Bed, build_network, require_netbed
from tests.network.test_network import http, until

pytestmark = [pytest.mark.network, pytest.mark.slow]

MODE = 2
METERS = 100


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_fleet_behind_a_relay_across_the_wan_registers_and_every_meter_is_read(
        tmp_path: Path, transport: str) -> None:
    require_netbed()
    with Bed() as bed:
        net = build_network(bed, meters=1, deep_meters=0)
        master = nodes.master_relay(net.master, MODE, *nodes.FLEET_RELAY)
        master.address(60)
        headend = nodes.headend(net.headend, net.master.ip, tmp_path, MODE,
                                "--collect-interval", "10", "--log-interval", "0",
                                *nodes.FLEET_HEADEND)
        headend.address(60)
        host, port = headend.wait_for(r"console at http (\S+):(\d+)", 60).groups()
        web = f"http://{host}:{port}"
        relay = nodes.relay(net.relay, net.master.ip, nodes.RELAY_TITLE, MODE,
                            "--forward-timeout", "8", *nodes.FLEET_RELAY)
        relay.address(60)
        # two worker processes: ports 1153 and 1154, each worker's meters registering its own
        fleet = nodes.fleet(net.meters[0], net.relay.ip, METERS, MODE, "--ramp", "5",
                            "--workers", "2", "--transport", transport)
        fleet.wait_for(rf"fleet: all {METERS} meters registered", 90)

        def read_all() -> list[dict] | None:
            listed = http(net, f"{web}/api/nodes")
            meters = [n for n in listed if n["ap_title"].startswith(nodes.ASSIGN_BRANCH + ".")]
            if len(meters) == METERS and all(n["latest"] for n in meters):
                return meters
            return None

        meters = until(f"the head-end reads all {METERS} meters", read_all, timeout=90,
                       every=3)
        # each its own assigned title, each read with its own household's values (at night
        # a household is its base load plus whichever appliances run: few distinct values)
        assert len({n["ap_title"] for n in meters}) == METERS
        assert len({n["latest"]["values"]["active_power"] for n in meters}) > 1
        summary_status = fleet.stop()
        headend_text = "\n".join(headend.lines)
    assert summary_status == 0, "\n".join(fleet.lines[-30:])
    text = "\n".join(fleet.lines)
    found = re.search(r"registered at the end: ([\d,]+) of ([\d,]+)", text)
    assert found and found.group(1) == found.group(2) == f"{METERS}", text[-2000:]
    assert "Traceback" not in text and "Traceback" not in headend_text
