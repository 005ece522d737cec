"""The head-end's REST API against a real head-end and a real meter on 127.0.0.1.

The head-end, its web app on uvicorn and an in-process meter share one event loop in a
background thread (as `c1222 headend` runs them); the tests talk HTTP to it with httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from c1222.headend import server as headend_server
from c1222.headend.server import HeadEnd, HeadEndConfig
from c1222.headend.web import ServiceName, create_app
from c1222.meter.config import MeterConfig
from c1222.meter.node import Meter
from c1222.transport.http import HttpLimits, uvicorn_config

METER = "2.16.124.113620.1.22.0.123.8437"


class System(threading.Thread):
    """A head-end with its web app, and meters on demand, on one loop in a thread."""

    def __init__(self, tmp: Path, *, collect_interval: float = 3600.0,
                 log_interval: float = 3600.0, timeout: float = 5.0,
                 http_limits: HttpLimits | None = None, **config: Any) -> None:
        super().__init__(daemon=True, name="headend-loop")
        self.tmp = tmp
        self.config = HeadEndConfig(listen=("127.0.0.1", 0), db=f"sqlite:///{tmp / 'h.db'}",
                                    collect_interval=collect_interval,
                                    log_interval=log_interval, timeout=timeout, **config)
        self.http_limits = http_limits
        self.meter_options: dict[str, Any] = {}
        self.loop = asyncio.new_event_loop()
        self.headend: HeadEnd | None = None
        self.server: Any = None
        self.meters: list[Meter] = []
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._served: asyncio.Task[None] | None = None
        self.stopped_in: float | None = None

    # -------------------------------------------------------------------- the loop

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported by __enter__
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        import uvicorn

        self.headend = HeadEnd(self.config)
        self.address = await self.headend.start()
        # served as `c1222 headend` serves it: under the HTTP limits (transport.http)
        self.server = uvicorn.Server(uvicorn_config(create_app(self.headend, self.http_limits),
                                                    "127.0.0.1", 0, self.http_limits))
        self.server.install_signal_handlers = lambda: None
        self._served = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._served.done():
                self._served.result()
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run a coroutine on the head-end's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> System:
        self.start()
        self._ready.wait(20)
        if self._error is not None:
            raise self._error
        assert self.port, "the head-end did not start"
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_meter(self, ap_title: str = METER, serial: str = "00008437",
                    speed: float = 1.0) -> str:
        """Start a meter that registers with the head-end; its AP title."""
        async def start() -> None:
            meter = Meter(MeterConfig(ap_title=ap_title, serial_number=serial,
                                      listen=("127.0.0.1", 0), headend=self.address,
                                      state_dir=self.tmp / f"meter-{serial}", speed=speed,
                                      **self.meter_options))
            await meter.start()
            self.meters.append(meter)

        self.call(start())
        return ap_title

    def wait_registered(self, ap_title: str, timeout: float = 15.0) -> None:
        assert self.headend is not None
        deadline = time.monotonic() + timeout
        while ap_title not in self.headend.registrar.nodes:
            assert time.monotonic() < deadline, f"{ap_title} did not register"
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            for meter in self.meters:
                with contextlib.suppress(Exception):
                    await meter.stop()
            started = time.monotonic()
            self.server.should_exit = True
            await asyncio.wait_for(self._served, 10)  # an open event stream must not hang it
            self.stopped_in = time.monotonic() - started
            assert self.headend is not None
            await self.headend.stop()

        try:
            self.call(stop(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.join(10)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with System(tmp_path_factory.mktemp("headend")) as s:
        s.start_meter()
        s.wait_registered(METER)
        yield s


@pytest.fixture
def client(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.url, timeout=20) as c:
        yield c


def service(client: httpx.Client, name: str, params: dict[str, Any] | None = None,
            ap_title: str = METER) -> httpx.Response:
    return client.post(f"/api/nodes/{ap_title}/services/{name}", json=params)


def wait_for_log(client: httpx.Client, ok: Callable[[list[dict[str, Any]]], Any],
                 params: dict[str, Any], timeout: float = 10.0) -> list[dict[str, Any]]:
    """GET /api/messages until ``ok(messages)``."""
    deadline = time.monotonic() + timeout
    while True:
        log = client.get("/api/messages", params=params).json()
        if ok(log):
            return log
        assert time.monotonic() < deadline, log
        time.sleep(0.05)


def labels(part: dict[str, Any]) -> list[str]:
    return [row["label"] for row in part["tree"]]


# ------------------------------------------------------------------------------ nodes


def test_nodes_lists_the_registered_meter_with_its_state(client: httpx.Client) -> None:
    nodes = client.get("/api/nodes").json()
    node = next(n for n in nodes if n["ap_title"] == METER)
    assert node["state"] == "registered" and node["connected"] is True
    assert node["native_address"].startswith("127.0.0.1:")
    assert node["node_type"] == 0x20 and node["device_class"] == "53494d55"
    assert node["serial_number"] and node["registration_period"] == 3600
    assert node["registered_at"].endswith("Z") and node["last_seen"]
    assert client.get("/api/nodes", params={"state": "deregistered"}).json() == []
    assert client.get("/api/nodes", params={"state": "bogus"}).status_code == 422


def test_one_node_and_an_unknown_one(client: httpx.Client) -> None:
    node = client.get(f"/api/nodes/{METER}").json()
    assert node["ap_title"] == METER and node["state"] == "registered"
    assert "latest" in node and "registers" in node
    assert client.get("/api/nodes/2.16.124.113620.1.22.0.123.1").status_code == 404
    assert client.get("/api/nodes/not-a-title").status_code == 404


# ------------------------------------------------------------------------------ services


def test_identify_returns_the_parsed_response_and_its_hex(client: httpx.Client) -> None:
    r = service(client, "identify")
    assert r.status_code == 200
    x = r.json()
    assert x["service"] == "identify" and x["error"] is None and x["response_codes"] == ["ok"]
    assert x["request"]["hex"].startswith("60") and x["response"]["hex"].startswith("60")
    assert any("service=identify" in label for label in labels(x["request"]))
    response = labels(x["response"])
    assert any("service=identify" in s and "response_code=ok" in s and "std=3" in s
               for s in response), response
    for part in (x["request"], x["response"]):
        # every row is the bytes it occupies: laid end to end they are the message
        assert part["exact"] is True
        assert "".join(row["hex"] for row in part["tree"]) == part["hex"]
        assert [row["offset"] for row in part["tree"]] == [
            sum(r["length"] for r in part["tree"][:i]) for i in range(len(part["tree"]))]
        assert part["tree"][0]["depth"] == 0 and part["json"]["services"]
    assert x["response"]["json"]["services"][0]["std"] == 3


def test_read_table_0_and_a_partial_read(client: httpx.Client) -> None:
    x = service(client, "read", {"table": 0}).json()
    assert x["response_codes"] == ["ok", "ok"]
    assert any("table_id=0" in s for s in labels(x["request"]))
    assert any("service=read" in s and "table_data=" in s for s in labels(x["response"]))
    x = service(client, "read", {"table": 1, "offset": 4, "count": 8}).json()
    assert x["response_codes"] == ["ok", "ok"]
    assert x["response"]["json"]["services"][1]["table_data"]["count"] == 8


def test_read_of_a_missing_table_answers_sns_with_status_200(client: httpx.Client) -> None:
    r = service(client, "read", {"table": 99})
    assert r.status_code == 200
    assert r.json()["response_codes"] == ["ok", "sns"]
    assert any("response_code=sns" in s for s in labels(r.json()["response"]))


def test_write_of_a_read_only_table_is_refused_by_the_meter(client: httpx.Client) -> None:
    x = service(client, "write", {"table": 1, "offset": 0, "data": "41 42"}).json()
    assert x["response_codes"][0] == "ok" and x["response_codes"][1] != "ok"
    assert any("partial_write_offset" in s for s in labels(x["request"]))


@pytest.mark.parametrize("name, params, codes", [
    ("logon", {"user_id": 2, "user": "console", "timeout": 60}, ["ok"]),
    ("security", {"user_id": 2, "password": "PASSWORD"}, ["ok"]),
    ("wait", {"seconds": 5}, ["ok"]),
    ("logoff", {}, ["ok"]),
    ("logoff", None, ["isss"]),  # no session any more
    ("terminate", {}, None),
    ("resolve", {}, ["sns"]),  # an end device is no relay
    ("trace", {"ap_title": METER}, ["sns"]),
])
def test_session_and_network_services(client: httpx.Client, name: str,
                                      params: dict[str, Any] | None,
                                      codes: list[str] | None) -> None:
    r = service(client, name, params)
    assert r.status_code == 200, r.text
    x = r.json()
    assert x["service"] == name and len(x["response_codes"]) == 1
    if codes is not None:
        assert x["response_codes"] == codes, x["response_codes"]
    assert any(f"service={name}" in s for s in labels(x["request"]))


def test_remote_disconnect_and_connect_procedures(client: httpx.Client) -> None:
    for param in ("00", "01"):
        x = service(client, "procedure", {"number": 0, "params": param, "mfg": True}).json()
        assert x["response_codes"] == ["ok", "ok", "ok"]
        requests = labels(x["request"])
        assert any("table_id=7" in s for s in requests)
        assert any("table_id=8" in s for s in requests)
        # Table 8: the procedure (0 with the manufacturer bit), its sequence number, result
        # code 0 (completed) and the switch state it left
        data = x["response"]["json"]["services"][2]["table_data"]["data"]
        assert data == "00080100" + param


def test_deregister_and_disconnect_and_the_meter_comes_back(system: System,
                                                            client: httpx.Client) -> None:
    x = service(client, "deregister", {}).json()
    assert x["response_codes"] == ["ok"]  # the meter registers again by itself
    x = service(client, "disconnect").json()
    assert x["response_codes"] == ["ok"]  # the meter closes the association after it
    system.wait_registered(METER)
    deadline = time.monotonic() + 15
    while service(client, "identify").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_every_service_of_the_head_end_is_offered() -> None:
    assert tuple(s.value for s in ServiceName) == headend_server.SERVICES


def test_unknown_node_is_404(client: httpx.Client) -> None:
    r = service(client, "identify", ap_title="2.16.124.113620.1.22.0.123.1")
    assert r.status_code == 404 and "not registered" in r.json()["detail"]


@pytest.mark.parametrize("name, params", [
    ("read", {"table": -1}),
    ("read", {"table": 70000}),
    ("read", {"tabel": 0}),  # a typo is not silently ignored
    ("write", {"table": 10, "data": "xyz"}),
    ("wait", {"seconds": 300}),
    ("logon", {"user": "far too long a name"}),
    ("procedure", {"number": 0, "params": "0"}),
    ("resolve", {"ap_title": "not.an.oid"}),
])
def test_bad_params_are_422(client: httpx.Client, name: str, params: dict[str, Any]) -> None:
    r = service(client, name, params)
    assert r.status_code == 422, r.text


def test_unknown_service_is_422(client: httpx.Client) -> None:
    assert service(client, "bogus").status_code == 422


def test_no_answer_is_502_with_the_error(tmp_path: Path) -> None:
    from c1222.headend.registry import Node

    with System(tmp_path, timeout=1.0) as s:
        s.start_meter()
        s.wait_registered(METER)

        async def silence() -> tuple[str, asyncio.AbstractServer]:
            # the meter goes away but stays registered; a second node accepts connections
            # and never answers
            for meter in s.meters:
                await meter.stop()
            s.meters.clear()
            mute = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            port = mute.sockets[0].getsockname()[1]
            title = "2.16.124.113620.1.22.0.123.9999"
            assert s.headend is not None
            s.headend.registrar.nodes[title] = Node(
                ap_title=title, native_address=f"127.0.0.1:{port}".encode(), node_type=0x20,
                connection_type=0x40, device_class=b"TEST", serial_number="9999",
                registration_period=3600, registered_at=time.time(), last_seen=time.time())
            return title, mute

        mute_title, mute = s.call(silence())
        try:
            with httpx.Client(base_url=s.url, timeout=30) as c:
                refused = service(c, "identify")
                silent = service(c, "read", {"table": 0}, ap_title=mute_title)
        finally:
            s.loop.call_soon_threadsafe(mute.close)
    assert refused.status_code == 502
    x = refused.json()
    assert "cannot connect" in x["error"] and x["detail"] == x["error"]
    assert x["request"] is None and x["response"] is None
    assert silent.status_code == 502
    x = silent.json()
    assert x["response"] is None and x["error"] and x["detail"]
    assert x["request"]["hex"].startswith("60")
    assert any("table_id=0" in s for s in labels(x["request"]))


# ------------------------------------------------------------------------------ readings


def test_collect_then_readings(client: httpx.Client) -> None:
    r = client.post(f"/api/nodes/{METER}/collect")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ap_title"] == METER and body["latest"] is not None
    assert 200 < body["latest"]["values"]["voltage"] < 240
    present = client.get(f"/api/nodes/{METER}/readings", params={"kind": "present"}).json()
    names = {row["name"] for row in present}
    assert {"voltage", "current", "active_power", "power_factor"} <= names
    assert all(row["kind"] == "present" for row in present)
    times = [row["time"] for row in present]
    assert times == sorted(times)
    registers = client.get(f"/api/nodes/{METER}/readings",
                           params={"kind": "register", "limit": 3}).json()
    assert 0 < len(registers) <= 3 and registers[0]["kind"] == "register"
    newest = client.get(f"/api/nodes/{METER}/readings",
                        params={"newest_first": True, "limit": 1}).json()
    assert newest[0]["time"] >= times[-1]
    future = client.get(f"/api/nodes/{METER}/readings",
                        params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future == []
    node = client.get("/api/nodes").json()[0]
    assert node["latest"]["values"]["voltage"] == body["latest"]["values"]["voltage"]


def test_collect_with_logs_stores_intervals_and_events(client: httpx.Client) -> None:
    r = client.post(f"/api/nodes/{METER}/collect", params={"logs": True})
    assert r.status_code == 200, r.text
    events = client.get(f"/api/nodes/{METER}/readings", params={"kind": "event"}).json()
    assert events and isinstance(events[0]["extra"], dict) and "code" in events[0]["extra"]


def test_readings_bad_queries(client: httpx.Client) -> None:
    assert client.get(f"/api/nodes/{METER}/readings", params={"kind": "x"}).status_code == 422
    assert client.get(f"/api/nodes/{METER}/readings", params={"limit": 0}).status_code == 422
    assert client.get("/api/nodes/2.16.124.113620.1.22.0.123.1/readings").status_code == 404
    assert client.post("/api/nodes/2.16.124.113620.1.22.0.123.1/collect").status_code == 404


# ------------------------------------------------------------------------------ messages


def test_messages_and_a_message_with_its_tree(client: httpx.Client) -> None:
    sent = service(client, "identify").json()
    # the log is written in batches, a moment after the exchange
    log = wait_for_log(client, lambda log: log and log[0]["hex"] == sent["response"]["hex"],
                       {"ap_title": METER, "limit": 2})
    assert len(log) == 2
    response, request = log
    assert request["direction"] == "out" and request["summary"] == "identify"
    assert response["direction"] == "in" and response["summary"] == "ok"
    assert response["id"] > request["id"]
    assert request["peer"].startswith("127.0.0.1:") and request["transport"] == "tcp"
    assert request["size"] * 2 == len(request["hex"])
    detail = client.get(f"/api/messages/{response['id']}").json()
    assert detail["hex"] == response["hex"] and detail["exact"] is True
    assert any("service=identify" in row["label"] and "std=3" in row["label"]
               for row in detail["tree"])
    assert detail["json"]["services"][0]["std"] == 3
    # paging
    older = client.get("/api/messages", params={"before_id": request["id"], "limit": 5}).json()
    assert older and all(m["id"] < request["id"] for m in older)
    assert client.get("/api/messages/999999999").status_code == 404
    everything = client.get("/api/messages", params={"limit": 1000}).json()
    assert any(m["summary"] == "register" for m in everything)


def test_a_message_logged_without_json_is_decoded_from_its_bytes(system: System,
                                                                 client: httpx.Client) -> None:
    import datetime as dt

    from c1222.headend.storage import MessageRecord

    x = service(client, "identify").json()
    raw = bytes.fromhex(x["request"]["hex"])
    record = MessageRecord(time=dt.datetime.now(dt.timezone.utc), direction="out",
                           peer="127.0.0.1:1", transport="tcp", raw=raw, summary="identify",
                           ap_title=METER, json=None)
    assert system.headend is not None
    new_id = system.call(system.headend.storage.log_message(record))
    detail = client.get(f"/api/messages/{new_id}").json()
    assert detail["exact"] is True and detail["error"] is None
    assert any("service=identify" in row["label"] for row in detail["tree"])
    garbage = MessageRecord(time=dt.datetime.now(dt.timezone.utc), direction="in",
                            peer="127.0.0.1:1", transport="tcp", raw=b"\x60\x05\x01",
                            summary="undecoded", ap_title=METER, json=None)
    bad_id = system.call(system.headend.storage.log_message(garbage))
    detail = client.get(f"/api/messages/{bad_id}").json()
    assert detail["tree"] is None and detail["error"] and detail["hex"] == "600501"


# ------------------------------------------------------------------------------ OpenAPI


def test_openapi_documents_every_path(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) >= {
        "/api/nodes", "/api/nodes/{ap_title}", "/api/nodes/{ap_title}/services/{name}",
        "/api/nodes/{ap_title}/readings", "/api/nodes/{ap_title}/collect", "/api/messages",
        "/api/messages/{message_id}", "/api/events"}
    post = doc["paths"]["/api/nodes/{ap_title}/services/{name}"]["post"]
    assert {"200", "404", "422", "502"} <= set(post["responses"])
    assert "ServiceParams" in json.dumps(post["requestBody"])
    assert "ExchangeOut" in doc["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_the_console_and_its_files_are_served(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "console.js" in page.text
    for path in ("/static/console.js", "/static/console.css",
                 "/static/vendor/uPlot.iife.min.js", "/static/vendor/uPlot.min.css"):
        assert client.get(path).status_code == 200, path


# ------------------------------------------------------------------------------ events


def read_events(url: str, until: Callable[[list[tuple[str, dict[str, Any]]]], bool],
                timeout: float = 20.0, params: dict[str, str] | None = None,
                on_open: Callable[[], None] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Server-sent events from ``url`` until ``until(events)`` holds."""
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.Client(timeout=httpx.Timeout(timeout, read=timeout)) as c, \
            c.stream("GET", url, params=params) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        deadline = time.monotonic() + timeout
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                events.append((kind, json.loads(line[6:])))
                if kind == "hello" and on_open is not None:
                    on_open()
                if until(events):
                    return events
            assert time.monotonic() < deadline, events
    raise AssertionError(f"the stream ended: {events}")


def test_event_stream_delivers_a_registration(system: System) -> None:
    title = "2.16.124.113620.1.22.0.123.8438"
    events = read_events(
        f"{system.url}/api/events",
        lambda ev: any(k == "registered" and e["node"]["ap_title"] == title for k, e in ev)
        and any(k == "message" and e["summary"] == "register" for k, e in ev),
        on_open=lambda: threading.Thread(target=system.start_meter,
                                         args=(title, "00008438")).start())
    registered = next(e for k, e in events if k == "registered")
    assert registered["node"]["state"] == "registered"
    assert registered["node"]["registered_at"].endswith("Z")
    assert any(k == "message" and e["summary"] == "register" for k, e in events)


def test_event_stream_filters_by_node_and_type(system: System) -> None:
    def identify() -> None:
        def go() -> None:
            with httpx.Client(base_url=system.url, timeout=20) as c:
                service(c, "identify")
        threading.Thread(target=go).start()

    events = read_events(f"{system.url}/api/events",
                         lambda ev: any(k == "message" and e["summary"] == "ok" for k, e in ev),
                         params={"ap_title": METER, "types": "message"}, on_open=identify)
    assert {k for k, _ in events} <= {"hello", "message"}
    assert all(e["ap_title"] == METER for k, e in events if k == "message")


def test_an_open_event_stream_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    s = System(tmp_path)
    with s:
        opened = threading.Event()

        def hold() -> None:
            with contextlib.suppress(httpx.HTTPError):
                with httpx.Client(timeout=30) as c, c.stream("GET", f"{s.url}/api/events") as r:
                    for _ in r.iter_lines():
                        opened.set()

        reader = threading.Thread(target=hold, daemon=True)
        reader.start()
        assert opened.wait(10)
    assert s.stopped_in is not None and s.stopped_in < 5
    reader.join(5)
    assert not reader.is_alive(), "the stream did not end when the server stopped"
