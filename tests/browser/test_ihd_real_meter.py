"""The display page in headless Chromium, fed by a real `c1222 meter` over C12.22: values change
every second, the graph draws a line within the first minute at --speed 60 and 600 (the meter
feeds once a real second, so one sample per simulated minute or ten), the header's clock is the
meter's, the bill shown is the tariff engine's for the energy shown, and the stale notice
appears when the meter is stopped."""

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


SEGMENTS = "Number(document.querySelector('[data-testid=chart]').dataset.segments || 0)"


def _start(tmp_path: Path, speed: str) -> tuple[Running, Running, str]:
    display = Running(["ihd", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--state-dir", str(tmp_path / "display")])
    host, port = display.address()
    web = display.wait_for(r"page at http (\S+):(\d+)")
    url = f"http://{web.group(1)}:{web.group(2)}/"
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--ihd", f"{host}:{port}",
                     "--state-dir", str(tmp_path / "meter"), "--speed", speed])
    meter.address()
    return display, meter, url


def _line_within_a_minute(page) -> None:
    """The graph draws a line (two non-null neighbouring points, not isolated points) within
    a minute of the page opening with the meter just started."""
    page.wait_for_function(f"{SEGMENTS} >= 3", timeout=60000)
    assert page.evaluate(SEGMENTS) >= 3


def _clock_is_the_meters(page, url: str) -> None:
    meter_now = httpx.get(f"{url}api/live", timeout=5).json()["time"]
    shown = float(page.get_by_test_id("clock").get_attribute("data-value"))
    browser_now = page.evaluate("Date.now() / 1000")
    # the header shows the meter's clock, not the browser's (a sped-up meter runs ahead)
    assert abs(shown - meter_now) < abs(shown - browser_now) or abs(shown - meter_now) < 5, \
        (shown, meter_now, browser_now)


@pytest.mark.parametrize("speed", ["600"])
def test_page_fed_by_a_fast_meter_draws_a_line_within_a_minute(browser, tmp_path: Path,
                                                               speed: str) -> None:
    display, meter, url = _start(tmp_path, speed)
    context = browser.new_context(locale="en-US", timezone_id="Asia/Seoul")
    try:
        page = context.new_page()
        page.goto(url)
        _line_within_a_minute(page)
        page.wait_for_function("document.getElementById('clock').dataset.value !== ''")
        time.sleep(3)  # the meter's clock runs ahead of ours (as fast as its metrology can)
        meter_now = httpx.get(f"{url}api/live", timeout=5).json()["time"]
        ahead = meter_now - time.time()
        assert ahead > 30, ahead
        shown = float(page.get_by_test_id("clock").get_attribute("data-value"))
        assert abs(shown - meter_now) < ahead / 2, "the header shows the browser's clock"
    finally:
        context.close()
        # a meter far behind its --speed (a loaded machine) measures the rest before it stops
        meter.stop(timeout=120)
        assert display.stop() == 0


def test_page_fed_by_a_real_meter(browser, tmp_path: Path) -> None:
    display, meter, url = _start(tmp_path, "60")
    context = browser.new_context(locale="en-US", timezone_id="Asia/Seoul")
    try:
        page = context.new_page()
        page.goto(url)
        _line_within_a_minute(page)
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
        _clock_is_the_meters(page, url)
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
