"""Sign-in, roles and safe commands in the head-end console, in headless Chromium against a real
head-end and a real meter (docs/headend.md, "Sign-in and roles").

The browser contexts here carry no token: each signs in through the console's form. A wrong
password is refused on the form; a viewer sees no service buttons (no disconnect); an admin's
remote disconnect asks for confirmation naming the meter, sends nothing when cancelled, and
once confirmed appears in the audit panel.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth import add_user
from tests.unit.headend.test_web import METER, System

pytestmark = pytest.mark.browser

PASSWORD = "console-pw-1"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with System(tmp_path_factory.mktemp("console-auth")) as s:
        s.start_meter()
        s.wait_registered(METER)
        add_user(s.url, "vera", "viewer", PASSWORD)
        add_user(s.url, "boss", "admin", PASSWORD)
        yield s


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(anonymous=True, viewport={"width": 1280, "height": 900},
                              locale="en-US")
    yield ctx
    ctx.close()


def open_page(context: Any, url: str) -> tuple[Any, list[str]]:
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return page, errors


def sign_in(page: Any, user: str, password: str) -> None:
    page.get_by_test_id("signin").wait_for()
    page.get_by_test_id("signin-user").fill(user)
    page.get_by_test_id("signin-password").fill(password)
    page.get_by_test_id("signin-submit").click()


def audit(system: System, **query: Any) -> list[dict[str, Any]]:
    with httpx.Client(base_url=system.url, timeout=20) as client:  # the tests' admin token
        return client.get("/api/audit", params=query).json()


def test_sign_in_with_the_form_and_out_again(context: Any, system: System) -> None:
    page, errors = open_page(context, system.url)
    sign_in(page, "vera", "not the password")
    error = page.get_by_test_id("signin-error")
    page.wait_for_function("document.querySelector('[data-testid=signin-error]')"
                           ".textContent.length > 0")
    assert "Wrong user name or password" in error.inner_text()
    assert page.get_by_test_id("node-table").count() == 0  # nothing shown before sign-in
    sign_in(page, "vera", PASSWORD)
    page.get_by_test_id("userbar").wait_for()
    assert page.get_by_test_id("user-name").inner_text() == "vera"
    assert page.get_by_test_id("user-role").inner_text() == "viewer"
    page.locator(f"[data-testid=node-row][data-ap-title='{METER}']").wait_for()
    cookie = next(c for c in context.cookies() if c["name"] == "c1222_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("c1222_session") == -1  # not readable
    page.get_by_test_id("sign-out").click()
    page.get_by_test_id("signin").wait_for()
    assert errors == []


def test_a_viewer_has_no_disconnect_button(context: Any, system: System) -> None:
    page, errors = open_page(context, f"{system.url}/#/node/{METER}")
    sign_in(page, "vera", PASSWORD)
    page.get_by_test_id("userbar").wait_for()
    page.get_by_test_id("node-title").wait_for()
    page.wait_for_function(f"document.querySelector('[data-testid=node-title]')"
                           f".textContent === '{METER}'")
    page.wait_for_selector("[data-testid=node-facts] dd")
    for button in ("service-remote-disconnect", "service-remote-connect", "service-disconnect",
                   "service-terminate", "service-deregister", "service-write",
                   "service-read", "service-identify"):
        assert page.get_by_test_id(button).count() == 0, button
    assert page.get_by_test_id("collect-now").is_hidden()
    page.get_by_test_id("notice-card").wait_for()
    assert page.get_by_test_id("notice-send").is_hidden()  # notices: engineer and up
    assert page.get_by_test_id("audit-open").count() == 0  # the audit log: engineer and up
    assert errors == []


def test_remote_disconnect_asks_naming_the_meter_then_appears_in_the_audit_panel(
        context: Any, system: System) -> None:
    page, errors = open_page(context, f"{system.url}/#/node/{METER}")
    sign_in(page, "boss", PASSWORD)
    page.get_by_test_id("userbar").wait_for()
    button = page.get_by_test_id("service-remote-disconnect")
    button.wait_for()

    # cancelled: nothing is sent, nothing is audited
    before = len(audit(system, user="boss", ap_title=METER))
    button.click()
    dialog = page.get_by_test_id("confirm-dialog")
    dialog.wait_for()
    assert METER in page.get_by_test_id("confirm-text").inner_text()
    assert "Remote disconnect" in dialog.inner_text()
    page.get_by_test_id("confirm-cancel").click()
    assert dialog.count() == 0
    assert "cancelled" in page.get_by_test_id("result-status").inner_text()
    time.sleep(0.5)
    assert len(audit(system, user="boss", ap_title=METER)) == before

    # confirmed: sent, answered, audited
    button.click()
    page.get_by_test_id("confirm-ok").click()
    page.wait_for_selector("[data-testid=result][data-service=procedure]")
    page.get_by_test_id("audit-open").click()
    row = page.locator(f"[data-testid=audit-row][data-action='remote connect/disconnect']"
                       f"[data-ap-title='{METER}']")
    row.first.wait_for()
    text = row.first.inner_text()
    assert "boss" in text and "200" in text and '"params":"00"' in text
    # the filter narrows the panel to one user
    page.get_by_test_id("audit-user").fill("vera")
    page.get_by_test_id("audit-refresh").click()
    page.wait_for_function("![...document.querySelectorAll('[data-testid=audit-row]')]"
                           ".some((r) => r.textContent.includes('boss'))")
    assert errors == []
