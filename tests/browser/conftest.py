"""Fixtures of the browser tests: Debian's chromium driven by Playwright, the display's web app
served by a real uvicorn on 127.0.0.1 (port 0) in a background thread, and a feeder thread
that hands the history one sample a second, as the C12.22 node does.

Without chromium or Playwright the tests skip and say why; with ``C1222_REQUIRE_ALL=1`` (CI)
they fail instead. Playwright never downloads a browser here: it is pointed at
``/usr/bin/chromium`` (or ``$C1222_CHROMIUM``).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from c1222.ihd.history import BUCKET, History, Sample
from tests.interop.tshark import _missing

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SEOUL = ZoneInfo("Asia/Seoul")


def chromium_path() -> str:
    """Debian's chromium; skips (fails under C1222_REQUIRE_ALL=1) when it is not there."""
    path = os.environ.get("C1222_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        _missing("chromium is not installed (Debian: apt-get install chromium; "
                 "`make test` does it)")
    return path


# ------------------------------------------------------------------------------------------
# A household's day, for the preloaded history and the feeder


def household_watts(ts: float, rng: random.Random) -> float:
    """Active power of a plausible Korean flat at ``ts`` (a November weekday in Seoul)."""
    local = datetime.fromtimestamp(ts, SEOUL)
    h = local.hour + local.minute / 60 + local.second / 3600
    day_factor = 0.85 + 0.3 * ((local.toordinal() * 7919) % 100) / 100  # days differ
    fridge = 95.0 if (ts // 1200) % 2 else 8.0  # compressor 20 min on, 20 min off
    base = 140.0 + fridge  # router, standby, fridge
    if 6.5 <= h < 9:
        load = 320 + (880 if 7.0 <= h < 7.45 else 0) + (1700 if 7.6 <= h < 7.66 else 0)
    elif 9 <= h < 17:
        load = 90 + 60 * math.sin(h)
    elif 17 <= h < 19:
        load = 380 + (1450 if 18.2 <= h < 18.7 else 0)
    elif 19 <= h < 23.5:
        load = 420 + (650 if h >= 21 else 0) + (500 if 20.0 <= h < 20.9 else 0)  # TV, heater
    else:
        load = 60.0
    return max(base + load * day_factor + rng.gauss(0, 18), 40.0)


def make_sample(ts: float, watts: float, wh: float, rng: random.Random) -> Sample:
    volts = 220.0 + 2.0 * math.sin(ts / 3600) + rng.gauss(0, 0.35)
    pf = min(0.995, max(0.80, 0.93 + 0.05 * math.tanh((watts - 600) / 500) + rng.gauss(0, 0.004)))
    va = watts / pf
    return Sample(time=ts, voltage=volts, current=va / volts, active_power=watts,
                  apparent_power=va, power_factor=pf, energy_wh=wh)


def preload(history: History, start: float, end: float, *, step: float = BUCKET,
            wh: float = 1_523_000.0, seed: int = 7,
            dense_from: float | None = None) -> float:
    """Samples from ``start`` to ``end`` (exclusive), one every ``step`` seconds (every 5 s from
    ``dense_from`` on), one per bucket and in its middle; returns the register at the end."""
    rng = random.Random(seed)
    ts = start
    with history.batch():
        while ts < end:
            dt = step if dense_from is None or ts < dense_from - step else BUCKET
            watts = household_watts(ts, rng)
            wh += watts * dt / 3600.0
            history.add(make_sample(ts, watts, wh, rng))
            ts += dt
    return wh


class Feeder(threading.Thread):
    """One sample a second, on the wall clock, like the meter's feed through the node."""

    def __init__(self, history: History, wh: float, *, realistic: bool = False) -> None:
        super().__init__(daemon=True, name="ihd-feeder")
        self.history = history
        self.wh = wh
        self.realistic = realistic
        self.sent = 0
        self._stop_event = threading.Event()
        self._rng = random.Random(11)

    def run(self) -> None:
        while not self._stop_event.is_set():
            ts = time.time()
            if self.realistic:
                watts = household_watts(ts, self._rng)
            else:
                # a distinct value every second, so a test can see the page change
                watts = 800.0 + 300.0 * math.sin(self.sent / 3) + self.sent % 7
            self.wh += watts / 3600.0
            self.history.add(make_sample(ts, watts, self.wh, self._rng))
            self.sent += 1
            self._stop_event.wait(1.0 - (time.time() % 1.0) + 0.05)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


class ServerThread(threading.Thread):
    """uvicorn serving ``app`` in its own event loop, as the display runs it."""

    def __init__(self, app: Any) -> None:
        super().__init__(daemon=True, name="ihd-uvicorn")
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_level="warning"))
        self.port = 0

    def run(self) -> None:
        asyncio.run(self.server.serve())

    def __enter__(self) -> ServerThread:
        self.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.join(10)
        # the page's event stream is still open: a hang here is the shutdown bug
        assert not self.is_alive(), "uvicorn did not stop with an event stream open"


class Display:
    """A history, its web app on uvicorn and a feeder: what a browser test talks to."""

    def __init__(self, state_dir: Path, *, hours: float = 24.0, realistic: bool = False,
                 month_start: bool = False, days_before: int = 0) -> None:
        from c1222.ihd.web import create_app

        self.history = History(state_dir, tz="Asia/Seoul")
        now = time.time()
        end = (now // BUCKET) * BUCKET  # the feeder fills the bucket now is in
        dense = end - hours * 3600
        start = dense
        if month_start:  # the month so far at one sample a minute, then 5 s
            first = datetime.fromtimestamp(now, SEOUL).replace(day=1, hour=0, minute=0,
                                                               second=0, microsecond=0)
            start = min(first.timestamp(), dense)
        wh = 1_523_000.0
        if days_before:  # daily totals further back, one sample an hour (for the month view)
            wh = preload(self.history, start - days_before * 86400 + BUCKET / 2, start,
                         step=3600.0, wh=wh, seed=5)
        self.wh = preload(self.history, start + BUCKET / 2, end,
                          step=60.0 if month_start else BUCKET, dense_from=dense, wh=wh)
        self._preloaded_to = end
        self.app = create_app(self.history)
        self.server = ServerThread(self.app)
        self.feeder = Feeder(self.history, self.wh, realistic=realistic)

    def __enter__(self) -> Display:
        self.server.__enter__()
        # top up the buckets that passed while the server started, so the feeder continues
        # the preloaded history without a hole (a full 24 h window is then 17,280 points)
        self.feeder.wh = preload(self.history, self._preloaded_to + BUCKET / 2,
                                 (time.time() // BUCKET) * BUCKET, wh=self.wh, seed=8)
        self.feeder.start()
        return self

    @property
    def url(self) -> str:
        return self.server.url

    def __exit__(self, *exc: object) -> None:
        self.feeder.stop()
        try:
            self.server.__exit__(*exc)
        finally:
            self.history.close()


@pytest.fixture(scope="module")  # Playwright keeps a loop running: not past this module
def browser() -> Iterator[Any]:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield SignedIn(b)
        finally:
            b.close()


class SignedIn:
    """The browser, whose contexts send the tests' API token (tests/auth.py) to every page:
    the console tests see a console signed in as admin. ``new_context(anonymous=True)``: a
    context without it, which signs in through the console's form."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def new_context(self, *args: Any, anonymous: bool = False, **kwargs: Any) -> Any:
        if not anonymous:
            from tests.auth import AUTH

            kwargs["extra_http_headers"] = {**AUTH, **kwargs.get("extra_http_headers", {})}
        return self._browser.new_context(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)


@pytest.fixture(scope="module")
def display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Display]:
    """24 h of history at 5 s preloaded, then one sample a second from the feeder."""
    with Display(tmp_path_factory.mktemp("ihd")) as d:
        yield d


@pytest.fixture
def page(browser: Any, display: Display) -> Iterator[Any]:
    context = browser.new_context(locale="en-US", timezone_id="Asia/Seoul",
                                  viewport={"width": 1280, "height": 800},
                                  accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(display.url)
    pg.wait_for_function("document.getElementById('voltage').dataset.value !== ''")
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
