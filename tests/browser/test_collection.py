"""The console's Collection panel in headless Chromium, over real processes (`c1222 headend`
at a 2 s interval, `c1222 fleet` of 20 meters): the Meters page shows the interval under way
and the past ones, each with its meters due and read, as GET /api/collection counts them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from c1222.headend.server import HeadEndConfig
from tests.e2e.test_fleet import fleet, start_headend

pytestmark = pytest.mark.browser


def test_the_meters_page_shows_each_interval_s_accounting(browser: Any, tmp_path: Path) -> None:
    headend, address, web = start_headend(tmp_path)  # --collect-interval 1
    run = fleet("--meters", "20", "--headend", f"{address[0]}:{address[1]}", "--ramp", "0")
    errors: list[str] = []
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    try:
        run.wait_for(r"fleet: all 20 meters registered", 60)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{web}/")
        card = page.get_by_test_id("collection")
        card.wait_for()
        # a past interval with all 20 meters due and read (the panel polls every 5 s)
        # (past the newest two rows: those were settled when the panel polled)
        page.wait_for_function(
            """() => [...document.querySelectorAll('[data-testid=collection-row]')].slice(2)
                 .some((tr) => tr.querySelector('[data-col=due]').textContent === '20'
                   && tr.querySelector('[data-col=read]').textContent === '20')""")
        rows = page.get_by_test_id("collection-row")
        assert "(now)" in rows.first.inner_text()  # the interval under way first
        assert rows.count() >= 2
        summary = page.get_by_test_id("collection-summary").inner_text()
        assert "every 1 s" in summary and f"{HeadEndConfig.max_parallel} reads at once" in summary
        assert "3 attempts" in summary
        # the same numbers as the API
        shown = {int(rows.nth(k).get_attribute("data-number")): rows.nth(k)
                 for k in range(rows.count())}
        api = httpx.get(f"{web}/api/collection", timeout=10).json()
        now = int(rows.first.get_attribute("data-number"))
        # intervals that had settled when the panel last polled (the newest past one may not)
        settled = [i for i in api["history"]
                   if i["number"] in shown and i["number"] <= now - 2 and i["due"] == 20]
        assert settled, api
        row = shown[settled[0]["number"]]
        assert row.locator("[data-col=read]").inner_text() == str(settled[0]["read"])
        assert row.locator("[data-col=success]").inner_text() == "100.0 %"
        # leaving the page and coming back draws one panel, not two
        page.goto(f"{web}/#/messages")
        page.goto(f"{web}/#/")
        card.wait_for()
        assert page.get_by_test_id("collection").count() == 1
        assert errors == []
    finally:
        context.close()
        run.stop()
        headend.stop()
