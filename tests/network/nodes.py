"""Start the C12.22 nodes of the issue's network in the hosts of a bed, as a user would.

One place for the command lines (docs/network.md, docs/headend.md): the network test, the
benchmark and the bed's docs use these. Titles are the demo's branch (``...123``); keys are the
e2e tests' (never a real key).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.network.netbed import Host, HostRunning

BASE = "2.16.124.113620.1.22.0.123"
MASTER_TITLE = f"{BASE}.1"
RELAY_TITLE = f"{BASE}.2"
RELAY2_TITLE = f"{BASE}.3"
HEADEND_TITLE = f"{BASE}.4"
#: Titles the master relay assigns to nodes that register with the empty title.
ASSIGN_BRANCH = f"{BASE}.9000"
KEY = "2:000102030405060708090A0B0C0D0E0F"
PORT = 1153
#: A line a meter prints (or logs) once the master relay gave it a title.
ASSIGNED = re.compile(r"(?:assigned|registered as|AP title) (2\.16\.124\.113620\.1\.22\.0\.[\d.]+)")


def _security(mode: int) -> list[str]:
    return ["--security-mode", str(mode), "--key", KEY]


def master_relay(host: Host, mode: int = 0, *extra: str) -> HostRunning:
    """``c1222 relay --master`` on the host's address, port 1153."""
    return host.c1222("relay", "--master", "--ap-title", MASTER_TITLE,
                      "--listen", f"{host.ip}:{PORT}", "--assign-branch", ASSIGN_BRANCH,
                      *_security(mode), "-v", *extra)


def relay(host: Host, upstream: str, title: str, mode: int = 0, *extra: str,
          listen: str | None = None) -> HostRunning:
    """``c1222 relay --upstream`` (a relay under another relay or the master)."""
    return host.c1222("relay", "--upstream", f"{upstream}:{PORT}", "--ap-title", title,
                      "--listen", f"{listen or host.ip}:{PORT}", *_security(mode), "-v",
                      *extra)


def meter(host: Host, relay_ip: str, state: Path, mode: int = 0, *extra: str,
          title: str | None = None, listen: str | None = None) -> HostRunning:
    """``c1222 meter --relay`` with the empty title (the master relay assigns one) unless
    ``title`` is given; its state in ``state`` (the assigned title survives a restart)."""
    # A serial number of its own, as real meters have: the conformance tester follows a meter
    # that registers again under a new title by its serial number (docs/conformance.md).
    serial = "".join(c for c in host.ip if c.isdigit())
    args = ["meter", "--relay", f"{relay_ip}:{PORT}", "--listen", f"{listen or host.ip}:{PORT}",
            "--serial-number", serial, "--state-dir", str(state), *_security(mode), "-v",
            *extra]
    if title is not None:
        args += ["--ap-title", title]
    return host.c1222(*args)


def headend(host: Host, master_ip: str, work: Path, mode: int = 0, *extra: str) -> HostRunning:
    """``c1222 headend --master-relay``: a notification host of the master relay."""
    return host.c1222("headend", "--master-relay", f"{master_ip}:{PORT}",
                      "--ap-title", HEADEND_TITLE, "--listen", f"{host.ip}:{PORT}",
                      "--http", f"{host.ip}:0", "--db", f"sqlite:///{work / 'headend.db'}",
                      *_security(mode), *extra, cwd=work)


def fleet(host: Host, relay_ip: str, meters: int, mode: int = 0, *extra: str) -> HostRunning:
    """``c1222 fleet --relay``: ``meters`` simulated meters on ``host``, port 1153, registering
    through the relay with the empty title (the master relay assigns each one). Over TCP each
    meter keeps its registration connection to the relay, so the relay's connection caps and
    ``--max-per-source`` must admit them (:func:`relay` with :data:`FLEET_RELAY`)."""
    return host.c1222("fleet", "--meters", str(meters), "--relay", f"{relay_ip}:{PORT}",
                      "--listen", f"{host.ip}:{PORT}", *_security(mode), *extra)


#: What a relay (and the master relay) needs to take a fleet host's meters: no cap on titles
#: per source address, a TCP connection per meter.
FLEET_RELAY = ("--max-per-source", "0", "--max-connections", "4000",
               "--max-connections-per-address", "4000")
#: What the head-end needs: the nodes the master relay reports, all from its one address.
FLEET_HEADEND = ("--max-registrations-per-address", "0")
