"""The display page in headless Chromium, fed by a real `c1222 meter` over C12.22: values change
every second, the graph holds points, the bill shown is the tariff engine's for the energy
shown, and the stale notice appears when the meter is stopped."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from c1222.ihd import tariff
from tests.browser.test_ihd_page import values
from tests.e2e.procs import Running

pytestmark = pytest.mark.browser


def test_page_fed_by_a_real_meter(browser, tmp_path: Path) -> None:
    display = Running(["ihd", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--state-dir", str(tmp_path / "display")])
    host, port = display.address()
    web = display.wait_for(r"page at http (\S+):(\d+)")
    url = f"http://{web.group(1)}:{web.group(2)}/"
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--ihd", f"{host}:{port}",
                     "--state-dir", str(tmp_path / "meter"), "--speed", "60"])
    meter.address()
    context = browser.new_context(locale="en-US", timezone_id="Asia/Seoul")
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("document.getElementById('voltage').dataset.value !== ''",
                               timeout=15000)
        seen = []
        for _ in range(4):
            seen.append(values(page, "voltage", "current", "active-power", "apparent-power",
                               "power-factor"))
            time.sleep(1.1)
        assert len({tuple(v.values()) for v in seen}) >= 3, seen  # a new sample each second
        assert all(200 < float(v["voltage"]) < 240 for v in seen), seen
        assert page.get_by_test_id("stale-notice").is_hidden()
        page.wait_for_function(
            "document.querySelector('[data-testid=chart]').dataset.points > 0", timeout=15000)
        # the bill shown is the tariff engine's bill for the month's energy shown
        page.wait_for_function(
            "document.querySelector('[data-testid=bill-total]').dataset.value", timeout=15000)
        for _ in range(5):  # read a consistent pair (the page re-renders every second)
            shown = values(page, "month-kwh", "bill-total")
            month = httpx.get(f"{url}api/summary", timeout=5).json()["month"]
            expected = tariff.bill(Decimal(shown["month-kwh"]), month)
            if int(shown["bill-total"]) == expected.total:
                break
            time.sleep(0.3)
        assert int(shown["bill-total"]) == expected.total, (shown, expected)
        # the meter stops: the page says so
        assert meter.stop() == 0
        notice = page.get_by_test_id("stale-notice")
        notice.wait_for(state="visible", timeout=12000)
        assert page.get_by_test_id("status").get_attribute("class").endswith("offline")
    finally:
        context.close()
        meter.stop()
        assert display.stop() == 0
