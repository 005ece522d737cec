"""The head-end's HTTP surface under hostile input, and secrets that never show.

A real head-end with its app on uvicorn (served by ``transport.http.uvicorn_config``, as
``c1222 headend`` serves it) and a real meter, all on 127.0.0.1; raw sockets where a client
misbehaves below HTTP.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from c1222.crypto.keys import KeyTable
from c1222.headend.web import ServiceName
from c1222.tables.access import GROUP_ALL, User
from c1222.transport.http import HttpLimits
from tests.unit.headend.test_web import METER, System, service

LIMITS = HttpLimits(max_body=256 * 1024, body_timeout=1.0, header_timeout=1.0)
#: Generous bound for "closed within the time-out" (a loaded machine), not a timing assert.
CLOSE_WITHIN = 15.0


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with System(tmp_path_factory.mktemp("hostile"), http_limits=LIMITS) as s:
        s.start_meter()
        s.wait_registered(METER)
        yield s


@pytest.fixture
def client(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.url, timeout=20) as c:
        yield c


def last_id(client: httpx.Client) -> int:
    """The newest logged message's id, once earlier exchanges are written (batches 0.1 s)."""
    time.sleep(0.3)
    rows = client.get("/api/messages", params={"limit": 1}).json()
    return rows[0]["id"] if rows else 0


def raw_exchange(system: System, data: bytes, *, wait: float = CLOSE_WITHIN) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection; what came back and whether the server closed it
    (within ``wait`` seconds)."""
    with socket.create_connection(("127.0.0.1", system.port), timeout=wait) as sock:
        sock.sendall(data)
        got = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return got, False
            if not chunk:
                return got, True
            got += chunk
        return got, False


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def post_head(path: str, length: int | None = None, chunked: bool = False,
              content_type: str = "application/json") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    return (head + "\r\n").encode()


# ------------------------------------------------------------------------------ bodies


SERVICES = f"/api/nodes/{METER}/services"


def test_a_100_mb_declared_body_with_one_byte_sent_is_413_and_closed(system: System) -> None:
    got, closed = raw_exchange(system, post_head(f"{SERVICES}/read", 100_000_000) + b"{")
    assert status(got) == 413 and closed, got
    assert b"request body over 262144 bytes" in got


def test_a_body_that_stops_coming_is_408_and_closed_after_the_time_out(system: System) -> None:
    got, closed = raw_exchange(system, post_head(f"{SERVICES}/read", 1000) + b'{"table"')
    assert status(got) == 408 and closed, got


def test_a_chunked_body_over_the_cap_is_413_while_it_streams(system: System) -> None:
    chunk = b"x" * 16384
    data = post_head(f"{SERVICES}/read", chunked=True)
    data += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20))  # 320 KiB, no end
    got, closed = raw_exchange(system, data)
    assert status(got) == 413 and closed, got


def test_headers_that_never_finish_are_closed_after_the_header_time_out(system: System
                                                                      ) -> None:
    got, closed = raw_exchange(system, b"GET /api/nodes HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    assert closed and got == b""


def test_a_body_within_the_cap_still_works(client: httpx.Client) -> None:
    assert service(client, "read", {"table": 0}).status_code == 200


# ------------------------------------------------------------------------------ validation


MALFORMED: list[tuple[str, bytes, str]] = [
    ("read", b"\xff\xfe\x00", "text/plain"),
    ("read", b"\xff\xfe\x00", "application/json"),
    ("read", b'{"table": 1e999}', "application/json"),
    ("read", b'{"table": -1e999}', "application/json"),
    ("read", b'{"table": NaN}', "application/json"),
    ("read", b'{"table": 1.5}', "application/json"),
    ("read", b'{"table": 1.0}', "application/json"),
    ("read", b'{"table": "1"}', "application/json"),
    ("read", b'{"table": true}', "application/json"),
    ("read", b'{"table": 99999999999999999999999999999}', "application/json"),
    ("read", b'{"table": ""}', "application/json"),
    ("read", b'{"table": []}', "application/json"),
    ("read", b"[]", "application/json"),
    ("read", b'"table"', "application/json"),
    ("read", b"{", "application/json"),
    ("read", b"{}", "application/json"),  # a read names its table
    ("read", b'{"table": 1, "offset": 4}', "application/json"),  # offset without count
    ("read", b'{"table": 1, "password": "x"}', "application/json"),  # another service's
    ("read", b'{"\\ud800": 1}', "application/json"),  # a lone surrogate as a key
    ("write", b"{}", "application/json"),
    ("write", b'{"data": "4142"}', "application/json"),  # no table: never a write of table 0
    ("write", b'{"table": "", "data": "4142"}', "application/json"),
    ("write", b'{"table": 10, "data": ""}', "application/json"),
    ("write", b'{"table": 10, "data": "  "}', "application/json"),
    ("write", b'{"table": 10, "data": "0x"}', "application/json"),
    ("write", b'{"table": 10, "data": "abc"}', "application/json"),
    ("write", b'{"table": 10, "data": 4142}', "application/json"),
    ("write", b'{"table": 10, "offset": 16777216, "data": "41"}', "application/json"),
    ("logon", b'{"user": ""}', "application/json"),
    ("logon", b'{"user": "\xe2\x82\xac"}', "application/json"),  # not Latin-1
    ("security", b'{"password": "' + b"p" * 21 + b'"}', "application/json"),
    ("security", b'{"user_id": 65536}', "application/json"),
    ("wait", b'{"seconds": -1}', "application/json"),
    ("resolve", b'{"ap_title": ""}', "application/json"),
    ("procedure", b"{}", "application/json"),  # no default procedure number
    ("procedure", b'{"number": 2048}', "application/json"),
    ("procedure", b'{"number": 0, "params": "zz"}', "application/json"),
    ("identify", b'{"table": 1}', "application/json"),
]


@pytest.mark.parametrize("name, body, content_type", MALFORMED)
def test_every_malformed_body_is_422_and_sends_nothing(client: httpx.Client, system: System,
                                                       name: str, body: bytes,
                                                       content_type: str) -> None:
    before = last_id(client)
    sent = system.headend.stats.copy() if system.headend else None
    r = client.post(f"{SERVICES}/{name}", content=body, headers={"content-type": content_type})
    # 400: not JSON text at all (FastAPI's parser); 422: a field, listed
    assert r.status_code == (400 if body.startswith(b"\xff") and "json" in content_type
                             else 422), r.text
    detail = r.json()["detail"]
    assert r.status_code == 400 or (isinstance(detail, list) and detail
                                    and all("msg" in d and "loc" in d for d in detail))
    assert last_id(client) == before, "a malformed request was sent to the meter"
    assert system.headend is None or system.headend.stats == sent


def test_bad_ids_and_pages_are_4xx_not_500(client: httpx.Client) -> None:
    for path in ("/api/messages/0", "/api/messages/-1", f"/api/messages/{2**63}",
                 f"/api/messages/{10**30}", "/api/messages/x"):
        assert client.get(path).status_code == 422, path
    assert client.get("/api/messages/99999999").status_code == 404
    for before in (0, 2**63, 10**30, "x"):
        assert client.get("/api/messages", params={"before_id": before}).status_code == 422


def test_a_request_larger_than_the_meter_takes_is_413_before_it_is_sent(
        client: httpx.Client, system: System) -> None:
    big = "00" * 40_000  # over the meter's 0x7FFF-byte requests, under the 256 KiB body cap
    first = service(client, "write", {"table": 10, "data": big})
    # the meter answers RQTL with its largest request; the head-end remembers it per node
    assert first.status_code == 200 and first.json()["response_codes"] == ["rqtl"], first.text
    before = last_id(client)
    again = service(client, "write", {"table": 10, "data": big})
    assert again.status_code == 413 and "32767" in again.json()["detail"], again.text
    assert last_id(client) == before  # nothing was sent
    assert service(client, "read", {"table": 0}).status_code == 200  # small ones still go


# ------------------------------------------------------------------------------ secrets


PASSWORD = "Zq7-s3cret-pw"
USER = "alice9x"
KEY = bytes.fromhex("8f1e2d3c4b5a69788796a5b4c3d2e1f0")


def _forms(secret: bytes) -> list[str]:
    """Every way a secret could be spelt in a response: ASCII, and hex in either case."""
    return [secret.decode("latin-1"), secret.hex(), secret.hex().upper()]


@pytest.fixture(scope="module", params=[0, 1, 2], ids=["mode0", "mode1", "mode2"])
def secured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[System]:
    mode = request.param
    keys = KeyTable({2: KEY})
    with System(tmp_path_factory.mktemp(f"secrets{mode}"), security_mode=mode, keys=keys,
                key_id=2 if mode else None, password=PASSWORD, user_id=2) as s:
        s.meter_options = {"security_mode": mode, "keys": KeyTable({2: KEY}),
                           "users": (User(2, PASSWORD.encode(), GROUP_ALL, "op"),)}
        s.start_meter()
        s.wait_registered(METER)
        yield s


def _outputs(system: System, client: httpx.Client) -> dict[str, str]:
    """GET every API route (and POST every service) with real parameters; path -> body."""
    from c1222.headend.web import create_app

    assert system.headend is not None
    out: dict[str, str] = {}
    app = create_app(system.headend)  # the same routes as the served app
    ids = [m["id"] for m in client.get("/api/messages", params={"limit": 1000}).json()]
    assert ids
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods:
            if route.path == "/api/nodes/{ap_title}/services/{name}":
                for name in ServiceName:
                    params = {"read": {"table": 1}, "write": {"table": 10, "data": "00"},
                              "procedure": {"number": 0, "params": "01", "mfg": True},
                              "logon": {"user": USER}, "security": {"password": PASSWORD}
                              }.get(name.value)
                    url = route.path.format(ap_title=METER, name=name.value)
                    out[f"POST {url}"] = client.post(url, json=params).text
            elif route.path == "/api/messages/{message_id}":
                for i in ids:
                    out[f"GET /api/messages/{i}"] = client.get(f"/api/messages/{i}").text
            elif route.path == "/api/events":
                out["GET /api/events"] = _stream(client, 1.0)
            else:
                url = route.path.format(ap_title=METER)
                out[f"{method} {url}"] = client.request(method, url).text
    for path in ("/", "/openapi.json", "/docs"):
        out[f"GET {path}"] = client.get(path).text
    return out


def _stream(client: httpx.Client, seconds: float) -> str:
    """What the event stream sends in about ``seconds`` (a message event at least)."""
    text = ""
    service(client, "identify")  # logged while the stream is open: a `message` event
    with client.stream("GET", "/api/events", timeout=httpx.Timeout(10, read=seconds)) as r:
        service(client, "security", {"password": PASSWORD})
        deadline = time.monotonic() + seconds
        try:
            for chunk in r.iter_text():
                text += chunk
                if time.monotonic() > deadline:
                    break
        except httpx.ReadTimeout:
            pass
    assert "hello" in text
    return text


def test_no_api_route_shows_a_password_user_name_or_key(secured: System) -> None:
    with httpx.Client(base_url=secured.url, timeout=20) as client:
        # logon and security with known secrets, then reads that carry the configured password
        assert service(client, "logon", {"user": USER}).status_code == 200
        assert service(client, "security", {"password": PASSWORD}).status_code == 200
        assert service(client, "read", {"table": 1}).json()["response_codes"] == ["ok", "ok"]
        time.sleep(0.3)  # the message log is written in batches
        outputs = _outputs(secured, client)
        # outputs[...] again after the walk: its own requests are in the log now
        time.sleep(0.3)
        for m in client.get("/api/messages", params={"limit": 1000}).json():
            outputs[f"GET /api/messages/{m['id']}"] = client.get(f"/api/messages/{m['id']}").text
    assert len(outputs) > 20
    secrets = {"password": PASSWORD.encode(), "user": USER.encode(), "key": KEY}
    for what, secret in secrets.items():
        for form in _forms(secret):
            hits = [where for where, body in outputs.items() if form in body]
            assert not hits, f"the {what} ({form}) shows in {hits[:5]}"
    # and the message log as stored (the database file itself)
    stored = (secured.tmp / "h.db").read_bytes()
    for path in secured.tmp.glob("h.db*"):
        stored += path.read_bytes()
    for what, secret in secrets.items():
        for form in [secret, *(f.encode() for f in _forms(secret))]:
            assert form not in stored, f"the {what} is stored"


def test_the_log_shows_the_redacted_fields_where_they_were(secured: System) -> None:
    with httpx.Client(base_url=secured.url, timeout=20) as client:
        x = service(client, "security", {"password": PASSWORD}).json()
        security = x["request"]["json"]["services"][0]
        assert security["service"] == "security" and security["password"] == "2a" * 20
        rows = x["request"]["tree"]
        assert any("password=" + "2a" * 20 in row["label"] for row in rows)
        # the tree still lines up with the bytes shown
        assert sum(row["length"] for row in rows) * 2 == len(x["request"]["hex"])


@pytest.mark.parametrize("secured", [2], ids=["mode2"], indirect=True)
def test_a_secured_request_tree_is_of_the_bytes_sent_with_its_mac(secured: System) -> None:
    with httpx.Client(base_url=secured.url, timeout=20) as client:
        x = service(client, "read", {"table": 1}).json()
    request = x["request"]
    sent = bytes.fromhex(request["hex"])
    rows = request["tree"]
    assert request["decrypted"] and not request["exact"]
    assert rows[0]["hex"] == sent[:2].hex()  # 60 43, not the plaintext's 60 3f
    assert sum(row["length"] for row in rows) == len(sent)
    assert rows[-1]["label"] == "mac" and rows[-1]["hex"] == sent[-4:].hex()
    for row in rows:  # every row but the decrypted services is the bytes at its offset
        if row["depth"] < 3:
            start = row["offset"]
            assert sent[start:start + row["length"]].hex() == row["hex"], row


def test_validation_errors_never_echo_the_input(client: httpx.Client) -> None:
    r = client.post(f"{SERVICES}/security", json={"password": PASSWORD * 3})
    assert r.status_code == 422 and PASSWORD not in r.text
    assert "input" not in json.dumps(r.json())


@pytest.mark.parametrize("query", [
    {"until": "0001-01-01T00:00:00+01:01"},  # before year 1 in UTC (schemathesis found it)
    {"since": "9999-12-31T23:59:59-01:00"},  # after year 9999 in UTC
])
def test_times_outside_utc_are_422(client: httpx.Client, query: dict[str, str]) -> None:
    r = client.get(f"/api/nodes/{METER}/readings", params=query)
    assert r.status_code == 422, r.text


def test_every_service_has_its_parameters_listed() -> None:
    from c1222.headend.server import SERVICES
    from c1222.headend.web import SERVICE_PARAMS, ServiceParams

    assert tuple(SERVICE_PARAMS) == SERVICES
    fields = set(ServiceParams.model_fields)
    for required, optional in SERVICE_PARAMS.values():
        assert required | optional <= fields


def test_the_head_end_itself_never_writes_a_default_table(system: System) -> None:
    from c1222.errors import ConfigurationError

    assert system.headend is not None
    for params in ({"data": "41"}, {"table": "", "data": "41"}, {"table": 10}):
        with pytest.raises(ConfigurationError, match="write needs a table"):
            system.call(system.headend.run_service(METER, "write", params))
