"""The console's Network panel in headless Chromium: a head-end with --master-relay (a fake
master relay on the same loop, only wire messages) learns a meter from the master relay's
notification; the panel lists the master relay and the meter behind it, and its Trace and
Resolve buttons show the meter's path and its native address without a reload.
``C1222_SCREENSHOTS=1`` writes docs/console-network.png."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_conformance import free_port
from tests.unit.headend.fake_master import MASTER_TITLE, FakeMaster, Route
from tests.unit.headend.meter_double import MeterDouble
from tests.unit.headend.test_web import System

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"
METER = "2.16.124.113620.1.22.0.123.9001"
RELAY = "2.16.124.113620.1.22.0.123.60"


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[System, FakeMaster, MeterDouble]]:
    port = free_port()
    with System(tmp_path, master_relay=("127.0.0.1", port)) as system:
        master, meter = FakeMaster(), MeterDouble(METER)
        system.call(master.start(port))
        system.call(meter.start())
        try:
            assert meter.address is not None and system.headend is not None
            master.routes[METER] = Route(meter.address, path=(RELAY,))
            deadline = time.monotonic() + 15
            while not (system.headend.master and system.headend.master.registered):
                assert time.monotonic() < deadline, "the head-end did not register"
                time.sleep(0.05)
            yield system, master, meter
        finally:
            system.call(meter.stop())
            system.call(master.stop())


def test_the_network_panel_lists_the_relay_and_traces_and_resolves_the_meter(
        browser: Any, network: tuple[System, FakeMaster, MeterDouble]) -> None:
    system, master, meter = network
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(system.url + "/#/network")
        page.wait_for_selector("[data-testid=status].live")
        master_line = page.get_by_test_id("network-master")
        master_line.get_by_text(MASTER_TITLE).wait_for()
        assert "registered" in page.get_by_test_id("master-state").inner_text()
        # the meter registers somewhere in the network while the page is open
        system.call(master.notify(METER))
        node = page.locator(f"[data-testid=network-relay][data-ap-title='{MASTER_TITLE}'] "
                            f"[data-testid=network-node][data-ap-title='{METER}']")
        node.wait_for()
        node.get_by_test_id("trace-button").click()
        # traced: it is listed behind the relay its path ends with, path shown
        behind = page.locator(f"[data-testid=network-relay][data-ap-title='{RELAY}'] "
                              f"[data-testid=network-node][data-ap-title='{METER}']")
        behind.wait_for()
        assert f"{MASTER_TITLE} › {RELAY}" in behind.get_by_test_id("node-path").inner_text()
        behind.get_by_test_id("resolve-button").click()
        host, port = meter.address  # type: ignore[misc]
        page.wait_for_function(
            f"""[...document.querySelectorAll("[data-testid=node-resolved]")]
                .some(td => td.textContent.includes('{host}:{port}'))""")
        if os.environ.get("C1222_SCREENSHOTS"):
            page.get_by_test_id("network").screenshot(path=str(DOCS / "console-network.png"))
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
