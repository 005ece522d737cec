"""Notices in headless Chromium, over real processes (`c1222 headend`, `c1222 meter`,
`c1222 ihd`, secured in mode 2): a notice sent from the head-end console's form appears on
the display within seconds, in Korean and in English, and goes when it is cleared; the
display's power-limit warning appears when the household sets a limit below the present
power, and goes when it is cleared (docs/ihd.md and docs/headend.md, "Notices")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_notices import METER, System, start_system

pytestmark = pytest.mark.browser

KO = "오늘 저녁 피크 시간입니다. 세탁기는 나중에 돌려 주세요."
EN = "Evening peak today. Please run the washing machine later."
#: Seconds a notice may take from the console's button to the display's banner: the meter
#: passes it on its next once-a-second write, the page polls every 2 s.
WITHIN_MS = 10_000


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    s = start_system(tmp_path_factory.mktemp("notices-browser"))
    yield s
    s.stop()


def _page(browser: Any, url: str, locale: str, errors: list[str]) -> tuple[Any, Any]:
    context = browser.new_context(locale=locale, timezone_id="Asia/Seoul",
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return context, page


def test_a_notice_from_the_console_appears_on_the_display_in_both_languages(
        browser: Any, system: System) -> None:
    errors: list[str] = []
    c_console, console = _page(browser, f"{system.console}/#/node/{METER}", "en-US", errors)
    c_ko, display_ko = _page(browser, f"{system.page}/", "ko-KR", errors)
    c_en, display_en = _page(browser, f"{system.page}/", "en-US", errors)
    try:
        for display in (display_ko, display_en):
            display.wait_for_function("document.getElementById('voltage').dataset.value !== ''")
            assert display.get_by_test_id("notice-banner").count() == 0
        console.get_by_test_id("notice-card").wait_for()
        console.get_by_test_id("notice-kind").select_option("peak")
        console.get_by_test_id("notice-limit").fill("1.5")
        console.get_by_test_id("notice-minutes").fill("45")
        console.get_by_test_id("notice-text-ko").fill(KO)
        console.get_by_test_id("notice-text-en").fill(EN)
        console.get_by_test_id("notice-send").click()
        console.wait_for_selector("[data-testid=notice-status][data-state=ok]")
        sent = time.monotonic()

        banner_ko = display_ko.get_by_test_id("notice-banner")
        banner_ko.wait_for(timeout=WITHIN_MS)
        banner_en = display_en.get_by_test_id("notice-banner")
        banner_en.wait_for(timeout=WITHIN_MS)
        print(f"banner on both pages {time.monotonic() - sent:.1f} s after the console's click")
        assert display_ko.get_by_test_id("notice-text").inner_text() == KO
        assert "1.5 kW 이하" in display_ko.get_by_test_id("notice-title").inner_text()
        assert display_en.get_by_test_id("notice-text").inner_text() == EN
        assert "below 1.5 kW" in display_en.get_by_test_id("notice-title").inner_text()
        assert banner_en.get_attribute("data-kind") == "peak"
        # the page's own language toggle switches the banner too
        display_en.get_by_test_id("lang-toggle").click()
        display_en.wait_for_function(
            f"document.querySelector('[data-testid=notice-text]').textContent === {KO!r}")
        display_en.get_by_test_id("lang-toggle").click()
        # the console shows what the meter holds
        console.wait_for_function(
            "document.querySelector('[data-testid=notice-held]').textContent"
            ".includes('in force')")

        console.get_by_test_id("notice-clear").click()
        display_ko.get_by_test_id("notice-banner").wait_for(state="detached",
                                                            timeout=WITHIN_MS)
        display_en.get_by_test_id("notice-banner").wait_for(state="detached",
                                                            timeout=WITHIN_MS)
    finally:
        for context in (c_console, c_ko, c_en):
            context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def test_a_bad_notice_in_the_console_says_why_and_sends_nothing(browser: Any,
                                                                system: System) -> None:
    errors: list[str] = []
    context, console = _page(browser, f"{system.console}/#/node/{METER}", "en-US", errors)
    try:
        console.get_by_test_id("notice-card").wait_for()
        console.get_by_test_id("notice-text-en").fill("x" * 241)
        console.get_by_test_id("notice-send").click()
        console.wait_for_selector("[data-testid=notice-status][data-state=error]")
        assert "422" in console.get_by_test_id("notice-status").inner_text()
        assert "240" in console.get_by_test_id("notice-status").inner_text()
    finally:
        context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def test_the_power_limit_warning_appears_below_present_power(browser: Any,
                                                             system: System) -> None:
    errors: list[str] = []
    context, display = _page(browser, f"{system.page}/", "en-US", errors)
    try:
        display.wait_for_function("document.getElementById('active-power').dataset.value !== ''")
        power = float(display.get_by_test_id("active-power").get_attribute("data-value"))
        assert power > 10  # a household draws something at any hour
        assert display.get_by_test_id("warning-limit").count() == 0
        display.get_by_test_id("limit-input").fill("100001")  # refused before it is sent
        display.get_by_test_id("limit-set").click()
        assert display.get_by_test_id("limit-error").is_visible()
        display.get_by_test_id("limit-input").fill("5")
        display.get_by_test_id("limit-set").click()
        warning = display.get_by_test_id("warning-limit")
        warning.wait_for(timeout=WITHIN_MS)
        assert "over the limit you set, 5 W" in warning.inner_text()
        assert display.get_by_test_id("limit-value").get_attribute("data-value") == "5"
        display.get_by_test_id("lang-toggle").click()
        display.wait_for_function("document.querySelector('[data-testid=warning-limit]')"
                                  ".textContent.includes('한도')")
        display.get_by_test_id("lang-toggle").click()
        # a limit far above present power: no warning
        display.get_by_test_id("limit-input").fill("100000")
        display.get_by_test_id("limit-set").click()
        warning.wait_for(state="detached", timeout=WITHIN_MS)
        display.get_by_test_id("limit-input").fill("5")
        display.get_by_test_id("limit-set").click()
        warning.wait_for(timeout=WITHIN_MS)
        display.get_by_test_id("limit-clear").click()
        warning.wait_for(state="detached", timeout=WITHIN_MS)
        assert display.get_by_test_id("limit-value").get_attribute("data-value") == ""
    finally:
        context.close()
    assert errors == [], f"JavaScript errors: {errors}"
