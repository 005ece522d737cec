"""The head-end console in headless Chromium, against a real head-end, its web app on uvicorn
and a real meter (all on one event loop in a thread, see tests/unit/headend/test_web.py).

A meter registers while the page is open and appears without a reload; on its page Identify
shows the parsed response and its hex, Read table 0 its hex, and the message log the
exchange. ``C1222_SCREENSHOTS=1`` writes docs/console.png.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.headend.test_web import METER, System

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    # present values twice a second for the chart; no load-profile reads (log_interval 0)
    with System(tmp_path, collect_interval=0.5, log_interval=0) as s:
        yield s


@pytest.fixture
def page(browser: Any, system: System) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def text(page: Any, testid: str) -> str:
    return page.get_by_test_id(testid).inner_text()


def test_a_meter_appears_and_identify_shows_the_parsed_response_and_its_hex(
        page: Any, system: System) -> None:
    page.goto(system.url)
    page.get_by_test_id("no-nodes").wait_for()
    page.wait_for_selector("[data-testid=status].live")
    page.evaluate("window.__not_reloaded = true")

    # registers while the page is open; its clock runs 2 minutes a second, so the chart
    # spans a while of the household's day by the end of the test
    system.start_meter(speed=120)
    row = page.locator(f"[data-testid=node-row][data-ap-title='{METER}']")
    row.wait_for()
    assert "registered" in row.inner_text()
    assert page.get_by_test_id("no-nodes").is_hidden()
    # its present values arrive with the collector's first read, still without a reload
    page.wait_for_function(
        f"""document.querySelector("[data-ap-title='{METER}'] [data-testid=node-voltage]")
            .textContent.endsWith(' V')""")
    assert page.evaluate("window.__not_reloaded") is True

    # its page: registry data, then Identify
    row.get_by_role("link").click()
    page.wait_for_url(f"**/#/node/{METER}")
    assert text(page, "node-title") == METER
    page.wait_for_function(
        "document.querySelector('[data-testid=node-facts]').textContent.includes('end device')")
    page.get_by_test_id("service-identify").click()
    page.wait_for_selector("[data-testid=result][data-service=identify]")
    tree = page.get_by_test_id("result-tree")
    identify_row = tree.locator("[data-testid=tree-row]", has_text="service=identify")
    assert "std=3" in identify_row.inner_text() and "response_code=ok" in identify_row.inner_text()
    response_hex = page.get_by_test_id("result-hex")
    assert response_hex.inner_text().startswith("0000  60 ")
    full = response_hex.get_attribute("data-hex")
    assert full.startswith("60") and len(full) > 100
    # each tree row carries its bytes beside it: the identify row's are in the message
    row_bytes = identify_row.locator(".bytes").inner_text().replace(" ", "").rstrip("…")
    assert row_bytes and row_bytes in full
    assert "service=identify" in text(page, "request-tree")
    assert page.get_by_test_id("request-hex").get_attribute("data-hex").startswith("60")
    assert "ok" in text(page, "result-status")

    # Read table 0: its data in hex
    page.get_by_test_id("param-read-table").fill("0")
    page.get_by_test_id("service-read").click()
    page.wait_for_selector("[data-testid=result][data-service=read]")
    assert "table_id=0" in text(page, "request-tree")
    assert "service=read" in text(page, "result-tree")
    read_hex = page.get_by_test_id("result-hex").get_attribute("data-hex")
    assert read_hex != full and len(read_hex) > len(full) // 2

    # an error code is shown as such, not as a failure of the page
    page.get_by_test_id("param-read-table").fill("99")
    page.get_by_test_id("service-read").click()
    page.wait_for_selector("[data-testid=result][data-codes='ok,sns']")
    assert "sns" in text(page, "result-status")

    # the message log shows the exchange; a click shows the message's tree and hex
    identify_msg = page.locator("[data-testid=message-row]", has_text="identify").first
    identify_msg.wait_for()
    assert identify_msg.get_attribute("data-direction") == "out"
    identify_msg.click()
    page.wait_for_function(
        "document.querySelector('[data-testid=message-tree]').textContent"
        ".includes('service=identify')")
    assert page.get_by_test_id("message-hex").get_attribute("data-hex").startswith("60")

    # the chart fills from the readings and then live
    page.wait_for_function(
        "Number(document.querySelector('[data-testid=readings-chart]').dataset.points) >= 3")
    assert page.locator("[data-testid=readings-chart] canvas").count() == 1

    # for the picture: Identify again, and its request selected in the log
    page.get_by_test_id("service-identify").click()
    page.wait_for_selector("[data-testid=result-status].ok")
    identify_rows = page.locator("[data-testid=message-row]", has_text="identify")
    page.wait_for_function(
        """[...document.querySelectorAll('[data-testid=message-row]')]
             .filter(r => r.textContent.includes('identify')).length >= 2""")
    identify_rows.first.click()
    page.wait_for_function(
        "document.querySelector('[data-testid=message-detail]').dataset.id === "
        f"'{identify_rows.first.get_attribute('data-id')}'")
    if os.environ.get("C1222_SCREENSHOTS") == "1":
        page.wait_for_function(
            "Number(document.querySelector('[data-testid=readings-chart]').dataset.points)"
            " >= 12")
        page.mouse.move(0, 0)
        page.evaluate("""document.querySelector('[data-testid=message-row].selected')
                         .scrollIntoView({block: 'center'})""")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(DOCS / "console.png"), full_page=True)

    # readable at tablet width: one column, nothing wider than the screen
    page.set_viewport_size({"width": 820, "height": 1100})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.get_by_test_id("service-identify").click()
    page.wait_for_selector("[data-testid=result-status].ok")


def test_the_message_log_page_lists_messages_live(page: Any, system: System) -> None:
    system.start_meter()
    system.wait_registered(METER)
    page.goto(f"{system.url}/#/messages")
    page.locator("[data-testid=message-row]", has_text="register").first.wait_for()
    count = page.locator("[data-testid=message-row]").count()
    # the collector reads the meter every second: new rows arrive without a reload
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=message-row]').length > {count}")
    page.locator("[data-testid=message-row]").first.click()
    page.wait_for_function(
        "document.querySelector('[data-testid=message-tree]').textContent.includes('apdu')")
