"""`c1222 headend --master-relay` on a real relay network (master relay, relay, meter that asks
for its title), every part started as a user would: the head-end learns the meter from the
master relay's notification and reads it by title alone, through the relays; Trace and Resolve
through the master relay show its path and native address; once the relay stops, a read is a
NETR named after the relay that answered it, in the API and in the collector's status."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.procs import Running
from tests.e2e.relay_net import MASTER, RELAY, SECURITY, RelayNet


def poll(what: str, check: Callable[[], Any], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_head_end_reads_a_meter_behind_the_relay_by_title_and_names_netr(
        tmp_path: Path) -> None:
    with RelayNet(tmp_path) as net:
        host, port = net.master_address
        headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                           "--db", f"sqlite:///{tmp_path / 'h.db'}",
                           "--master-relay", f"{host}:{port}", "--collect-interval", "0.5",
                           "--log-interval", "0", *SECURITY])
        net.parts.append(headend)
        web = headend.wait_for(r"console at http (\S+):(\d+)")
        api = httpx.Client(base_url=f"http://{web.group(1)}:{web.group(2)}", timeout=30)

        def meter() -> dict[str, Any] | None:
            for node in api.get("/api/nodes").json():
                status = node.get("read_status") or {}
                if node["node_type"] == 0x20 and status.get("last_success"):
                    return node
            return None

        node = poll("the meter learned from the master relay and read", meter)
        title = node["ap_title"]
        assert title.startswith("2.16.124.113620.1.22.0.123.9000.") and node["via"] == MASTER
        read = api.post(f"/api/nodes/{title}/services/read", json={"table": 1}).json()
        assert read["error"] is None and read["response_codes"][-1] == "ok", read
        view = api.get("/api/network").json()
        assert view["master_relay"]["ap_title"] == MASTER and view["master_relay"]["registered"]
        traced = api.post(f"/api/network/nodes/{title}/trace").json()
        assert traced["path"] == [MASTER, RELAY], traced
        resolved = api.post(f"/api/network/nodes/{title}/resolve").json()
        assert resolved["native_address"].startswith("127.0.0.1:"), resolved
        view = api.get("/api/network").json()
        behind = {r["ap_title"]: [n["ap_title"] for n in r["nodes"]] for r in view["relays"]}
        assert behind[RELAY] == [title]

        net.relay.stop()  # the relay the meter is behind goes away

        def netr() -> dict[str, Any] | None:
            answer = api.post(f"/api/nodes/{title}/services/read", json={"table": 1}).json()
            return answer if (answer.get("error") or "").startswith("NETR") else None

        answer = poll("NETR for the meter behind the stopped relay", netr)
        assert f"from relay {MASTER}" in answer["error"], answer
        poll("NETR as the collector's reason", lambda: "NETR" in (
            (api.get(f"/api/nodes/{title}").json()["read_status"] or {}).get("last_error")
            or ""))
