"""Sign-in, roles, CSRF, API tokens and the audit log of the head-end's REST API, through HTTP
against a real head-end (uvicorn) and a real meter (docs/headend.md, "Sign-in and roles").

Every route of the app without credentials is 401 (the routes are walked, not listed); each
role gets 403 on what it may not do and something else on what it may; the CSRF token is
required with the cookie and bound to its session; sign-ins (good and bad) and commands are
audited without their secrets; hostile sign-in bodies, cookies and tokens are refused cleanly.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from c1222.headend import auth
from c1222.headend.auth import COOKIE, CSRF_HEADER, FailedLogins, public, required_role
from tests.auth import AUTH, add_user, anonymous, session
from tests.unit.headend.test_web import METER, System

SERVICES = f"/api/nodes/{METER}/services"
PASSWORD = "correct horse 1"
ROLES = ("viewer", "operator", "engineer", "admin")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with System(tmp_path_factory.mktemp("auth")) as s:
        s.start_meter()
        s.wait_registered(METER)
        yield s


@pytest.fixture(scope="module")
def tokens(system: System) -> dict[str, str]:
    """An API token per role, each made by its own account through sign-in and
    POST /api/tokens (with the session's CSRF token)."""
    out = {}
    for role in ROLES:
        name = f"{role}-1"
        add_user(system.url, name, role, PASSWORD)
        client, csrf = session(system.url, name, PASSWORD)
        with closing(client):
            made = client.post("/api/tokens", json={"label": "tests"},
                               headers={CSRF_HEADER: csrf})
            assert made.status_code == 201, made.text
            assert made.json()["user"] == name and made.json()["token"].startswith("c1222_")
            out[role] = made.json()["token"]
    return out


def as_role(system: System, tokens: dict[str, str], role: str) -> httpx.Client:
    return anonymous(base_url=system.url, timeout=30,
                     headers={"Authorization": f"Bearer {tokens[role]}"})


def audit(system: System, **query: Any) -> list[dict[str, Any]]:
    with httpx.Client(base_url=system.url, timeout=30) as c:
        answer = c.get("/api/audit", params=query)
        assert answer.status_code == 200, answer.text
        return answer.json()


def _routes(routes: list[Any]) -> Iterator[Any]:
    """Every route of the app, those of included routers too."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield route


def _concrete(path: str) -> str:
    return (path.replace("{ap_title}", METER).replace("{name}", "read")
            .replace("{message_id}", "1"))


# ------------------------------------------------------------------------------ 401


def test_every_route_without_credentials_is_401_but_sign_in_and_health(system: System) -> None:
    from c1222.headend.web import create_app

    app = create_app(system.headend)  # the same routes as the served app
    checked = []
    with anonymous(base_url=system.url, timeout=30) as client:
        for route in _routes(app.routes):
            path = route.path
            methods = sorted(getattr(route, "methods", None) or {"GET"})
            if path == "/static":
                path = "/static/console.js"
            for method in methods:
                if path == "/api/events":
                    with client.stream(method, path) as answer:
                        status = answer.status_code
                else:
                    answer = client.request(method, _concrete(path), json={})
                    status = answer.status_code
                if public(method, path):  # open: answered (the sign-in's {} is a 422)
                    assert status in (200, 422), f"{method} {path}: {status}"
                else:
                    assert status == 401, f"{method} {path}: {status}"
                    assert answer.headers.get("www-authenticate") == "Bearer"
                checked.append(f"{method} {path}")
        # no route: a 401 as well, so an anonymous client learns nothing of the routes
        assert client.get("/api/no-such-route").status_code == 401
    schema = system.headend and app.openapi()["paths"]
    for path, operations in schema.items():
        for method in operations:
            assert f"{method.upper()} {path}" in checked, f"{method} {path} not walked"
    assert len(checked) > 25
    assert {"GET /", "GET /api/health", "POST /api/login", "GET /healthz"} <= set(checked)


def test_forged_tokens_and_cookies_are_401(system: System, tokens: dict[str, str]) -> None:
    good = tokens["viewer"]
    forged = [
        f"Bearer {good[:-1]}{'A' if good[-1] != 'A' else 'B'}",  # one character off
        f"Bearer {auth.new_token()}",                              # well formed, never made
        f"bearer {good}x",
        f"Basic {good}",
        "Bearer " + "x" * 5000,
        f"Bearer {good} extra",
    ]
    with anonymous(base_url=system.url, timeout=30) as client:
        for header in forged:
            answer = client.get("/api/nodes", headers={"Authorization": header})
            assert answer.status_code == 401, header[:40]
            assert good not in answer.text
        assert client.get("/api/nodes", headers={"Authorization": f"Bearer {good}"}
                          ).status_code == 200
        for cookie in ("", "x", secrets.token_urlsafe(32), "a" * 4000, "\xff\xfe", "../../",
                       '"quoted"; other=1'):
            client.cookies.clear()
            answer = client.get("/api/nodes",
                                headers={"Cookie": f"{COOKIE}={cookie}".encode("latin-1")})
            assert answer.status_code in (400, 401), repr(cookie[:20])


# ------------------------------------------------------------------------------ roles

#: (method, path, body, the weakest role that may): the bodies of commands that would drop
#: the meter or change accounts are malformed, so the roles that may get a 422, not a 403,
#: and nothing is sent.
MATRIX: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/nodes", None, "viewer"),
    ("GET", f"/api/nodes/{METER}/readings", None, "viewer"),
    ("GET", "/api/messages", None, "viewer"),
    ("GET", "/metrics", None, "viewer"),
    ("GET", "/api/me", None, "viewer"),
    ("GET", "/openapi.json", None, "viewer"),
    ("GET", "/api/audit", None, "engineer"),
    ("GET", "/api/users", None, "admin"),
    ("POST", f"{SERVICES}/identify", None, "operator"),
    ("POST", f"{SERVICES}/read", {"table": 1}, "operator"),
    ("POST", f"/api/nodes/{METER}/collect", None, "operator"),
    ("POST", f"/api/network/nodes/{METER}/trace", None, "operator"),
    ("POST", f"{SERVICES}/logon", {"user": "tests"}, "engineer"),
    ("POST", f"{SERVICES}/logoff", None, "engineer"),
    ("POST", f"{SERVICES}/write", {"table": 1, "data": "00"}, "engineer"),
    ("POST", f"{SERVICES}/procedure", {"number": 2000}, "engineer"),
    ("PUT", f"/api/nodes/{METER}/notice", {"kind": "nonsense"}, "engineer"),
    ("DELETE", f"/api/nodes/{METER}/notice", None, "engineer"),
    ("POST", f"{SERVICES}/procedure", {"number": 0, "mfg": True, "params": "01"}, "admin"),
    ("POST", f"{SERVICES}/procedure", {"number": 21, "params": "00"}, "admin"),
    ("POST", f"{SERVICES}/terminate", {"bogus": 1}, "admin"),
    ("POST", f"{SERVICES}/disconnect", {"bogus": 1}, "admin"),
    ("POST", f"{SERVICES}/deregister", {"bogus": 1}, "admin"),
    ("POST", "/api/users", {"name": "x", "role": "king", "password": "p"}, "admin"),
    ("DELETE", "/api/users/nobody-at-all", None, "admin"),
]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_403_on_what_it_may_not_do_and_not_on_the_rest(
        system: System, tokens: dict[str, str], role: str) -> None:
    rank = ROLES.index(role)
    with as_role(system, tokens, role) as client:
        for method, path, body, needed in MATRIX:
            answer = client.request(method, path, json=body)
            if rank < ROLES.index(needed):
                assert answer.status_code == 403, f"{role}: {method} {path} {body}"
                assert needed in answer.json()["detail"]
            else:
                assert answer.status_code != 403 and answer.status_code < 500 or \
                    answer.status_code == 502, f"{role}: {method} {path}: {answer.text[:200]}"
        me = client.get("/api/me").json()
        assert me["role"] == role and me["via"] == "token" and me["csrf_token"] is None
        assert me["may"]["remote_switch"] is (role == "admin")
        assert me["may"]["services"]["disconnect"] is (role == "admin")
        assert me["may"]["services"]["read"] is (rank >= 1)


def test_the_policy_is_default_deny() -> None:
    assert required_role("POST", "/api/some/new/route") == ("admin", "POST /api/some/new/route")
    assert required_role("DELETE", "/api/nodes/{ap_title}")[0] == "admin"
    assert required_role("GET", "/api/some/new/view")[0] == "viewer"
    assert required_role("POST", "/api/nodes/{ap_title}/services/{name}",
                         {"name": "unknown"})[0] == "admin"
    # a procedure whose number cannot be read needs what any procedure needs (then a 422)
    assert required_role("POST", "/api/nodes/{ap_title}/services/{name}",
                         {"name": "procedure"}, {"number": "0"})[0] == "engineer"
    assert required_role("POST", "/api/nodes/{ap_title}/services/{name}",
                         {"name": "procedure"}, {"number": 0, "mfg": True})[0] == "admin"


# ------------------------------------------------------------------------------ sessions


def test_sign_in_sets_a_strict_http_only_cookie_and_csrf_is_required_and_bound(
        system: System) -> None:
    add_user(system.url, "csrf-a", "engineer", PASSWORD)
    add_user(system.url, "csrf-b", "engineer", PASSWORD)
    with anonymous(base_url=system.url, timeout=30) as client:
        answer = client.post("/api/login", json={"username": "csrf-a", "password": PASSWORD})
        assert answer.status_code == 200
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower() and "Path=/" in cookie
        assert "Max-Age" not in cookie and "expires" not in cookie.lower()  # server-side expiry
    a, csrf_a = session(system.url, "csrf-a", PASSWORD)
    b, csrf_b = session(system.url, "csrf-b", PASSWORD)
    with closing(a), closing(b):
        assert a.get("/api/nodes").status_code == 200  # reads need no CSRF token
        identify = f"{SERVICES}/identify"
        assert a.post(identify).status_code == 403  # no token
        assert a.post(identify, headers={CSRF_HEADER: ""}).status_code == 403
        assert a.post(identify, headers={CSRF_HEADER: csrf_b}).status_code == 403  # b's
        assert b.post(identify, headers={CSRF_HEADER: csrf_a}).status_code == 403  # a's
        odd = {CSRF_HEADER: ("é" * 40).encode("latin-1")}
        assert a.post(identify, headers=odd).status_code == 403
        assert a.post(identify, headers={CSRF_HEADER: csrf_a}).status_code == 200
        assert a.get("/api/me").json()["csrf_token"] == csrf_a
        # a second sign-in is a new session with a new token; the old one still works
        # until it signs out
        assert a.post("/api/logout", headers={CSRF_HEADER: csrf_a}).status_code == 200
        assert a.get("/api/nodes").status_code == 401
        assert b.get("/api/nodes").status_code == 200


def test_a_removed_account_loses_its_sessions_and_tokens(system: System) -> None:
    add_user(system.url, "leaver", "operator", PASSWORD)
    client, csrf = session(system.url, "leaver", PASSWORD)
    with closing(client):
        token = client.post("/api/tokens", headers={CSRF_HEADER: csrf}).json()["token"]
        with httpx.Client(base_url=system.url, timeout=30) as admin:
            assert admin.delete("/api/users/leaver").status_code == 200
            assert admin.delete("/api/users/leaver").status_code == 404
        assert client.get("/api/nodes").status_code == 401
    with anonymous(base_url=system.url, timeout=30) as other:
        assert other.get("/api/nodes", headers={"Authorization": f"Bearer {token}"}
                         ).status_code == 401


def test_accounts_through_the_api(system: System) -> None:
    with httpx.Client(base_url=system.url, timeout=30) as admin:
        body = {"name": "api-user", "role": "operator", "password": PASSWORD}
        assert admin.post("/api/users", json=body).status_code == 201
        assert admin.post("/api/users", json=body).status_code == 409
        for bad in ({**body, "name": "has space"}, {**body, "role": "root"},
                    {**body, "password": "short"}, {**body, "extra": 1},
                    {**body, "name": "x" * 65}, {"name": "y"}):
            answer = admin.post("/api/users", json=bad)
            assert answer.status_code == 422, bad
            assert PASSWORD not in answer.text
        names = {u["name"]: u["role"] for u in admin.get("/api/users").json()}
        assert names["api-user"] == "operator" and names["admin"] == "admin"
        assert all("password" not in json.dumps(u) for u in admin.get("/api/users").json())


# ------------------------------------------------------------------------------ audit


def test_bad_password_is_401_and_audited_without_the_password(system: System) -> None:
    add_user(system.url, "typo", "viewer", PASSWORD)
    with anonymous(base_url=system.url, timeout=30) as client:
        answer = client.post("/api/login", data={"username": "typo", "password": "wrong pw 1"})
        assert answer.status_code == 401 and COOKIE not in answer.headers.get("set-cookie", "")
        unknown = client.post("/api/login", json={"username": "ghost", "password": "x"})
        assert unknown.status_code == 401 and unknown.json() == answer.json()  # same answer
    entries = audit(system, limit=20)
    failed = [e for e in entries if e["action"] == "sign-in" and e["status"] == 401]
    assert {e["params"]["username"] for e in failed} >= {"typo", "ghost"}
    assert all(e["user"] is None and e["address"] == "127.0.0.1" for e in failed)
    assert "wrong pw 1" not in json.dumps(entries)


def test_commands_are_audited_with_meter_parameters_and_result_secrets_hidden(
        system: System, tokens: dict[str, str]) -> None:
    with as_role(system, tokens, "admin") as admin:
        connect = admin.post(f"{SERVICES}/procedure",
                             json={"number": 0, "mfg": True, "params": "01"})
        assert connect.status_code == 200, connect.text
        codes = connect.json()["response_codes"]
    with as_role(system, tokens, "engineer") as engineer:
        assert engineer.post(f"{SERVICES}/security",
                             json={"password": "SECRET-PW-9"}).status_code == 200
    with as_role(system, tokens, "viewer") as viewer:
        assert viewer.post(f"{SERVICES}/disconnect").status_code == 403
    entries = audit(system, ap_title=METER, limit=50)
    switch = next(e for e in entries if e["action"] == "remote connect/disconnect"
                  and e["user"] == "admin-1")
    assert switch["ap_title"] == METER and switch["status"] == 200
    assert switch["params"]["number"] == 0 and switch["params"]["mfg"] is True
    assert switch["result"] == ",".join(codes)
    security = next(e for e in entries if e["action"] == "security")
    assert security["user"] == "engineer-1" and security["params"]["password"] == "***"
    assert "SECRET-PW-9" not in json.dumps(audit(system, limit=1000))
    refused = next(e for e in entries if e["action"] == "disconnect")
    assert refused["user"] == "viewer-1" and refused["status"] == 403
    # filters: by user, by meter (any spelling of the title), by time
    assert {e["user"] for e in audit(system, user="engineer-1")} == {"engineer-1"}
    assert audit(system, ap_title="2.16.124.113620.1.22.0.123.8437")
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    assert audit(system, since=later) == []
    assert audit(system, until="2000-01-01T00:00:00Z") == []
    page = audit(system, limit=2)
    older = audit(system, before_id=page[-1]["id"], limit=1)
    assert len(page) == 2 and older[0]["id"] < page[-1]["id"]
    with httpx.Client(base_url=system.url, timeout=30) as client:
        for bad in ({"limit": 0}, {"limit": 10**6}, {"since": "yesterday"},
                    {"before_id": -1}, {"user": "x" * 100}):
            assert client.get("/api/audit", params=bad).status_code == 422, bad


# ------------------------------------------------------------------------------ hostile


@pytest.mark.parametrize("body,content_type", [
    (b"", "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"[" * 10000 + b"]" * 10000, "application/json"),
    (b"[]", "application/json"),
    (b'{"username": 1, "password": 2}', "application/json"),
    (b'{"username": "admin"}', "application/json"),
    (b'{"username": "admin", "password": "x", "role": "admin"}', "application/json"),
    (b'{"username": "' + b"a" * 5000 + b'", "password": "x"}', "application/json"),
    (b"username=admin&password=%ff%fe", "application/x-www-form-urlencoded"),
    (b"username=admin", "application/x-www-form-urlencoded"),
    (b"&" * 5000, "application/x-www-form-urlencoded"),
    (b"--x\r\nContent-Disposition: form-data; name=username\r\n\r\nadmin\r\n--x--",
     "multipart/form-data; boundary=x"),
    (b"NaN", "application/json"),
])
def test_garbage_sign_in_bodies_are_422_never_500(system: System, body: bytes,
                                                  content_type: str) -> None:
    with anonymous(base_url=system.url, timeout=30) as client:
        answer = client.post("/api/login", content=body, headers={"content-type": content_type})
        assert answer.status_code == 422, answer.text[:200]
        assert COOKIE not in answer.headers.get("set-cookie", "")


def test_a_huge_sign_in_body_is_413(system: System) -> None:
    with anonymous(base_url=system.url, timeout=30) as client:
        answer = client.post("/api/login", content=b"{" + b" " * (3 << 20) + b"}",
                             headers={"content-type": "application/json"})
        assert answer.status_code == 413


def test_failed_sign_ins_are_limited_per_address(tmp_path: Path) -> None:
    with System(tmp_path) as s:
        with httpx.Client(base_url=s.url, timeout=30) as admin:  # the last admin stays
            assert admin.delete("/api/users/admin").status_code == 409
        add_user(s.url, "victim", "admin", PASSWORD)
        with anonymous(base_url=s.url, timeout=30) as client:
            for _ in range(auth.MAX_FAILURES):
                assert client.post("/api/login", json={"username": "victim",
                                                       "password": "guess 123"}
                                   ).status_code == 401
            blocked = client.post("/api/login", json={"username": "victim",
                                                      "password": PASSWORD})
            assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        # tokens still work while the address is blocked from signing in
        with httpx.Client(base_url=s.url, timeout=30) as admin:
            assert admin.get("/api/nodes").status_code == 200
            assert len([e for e in admin.get("/api/audit").json()
                        if e["action"] == "sign-in" and e["status"] == 401]) == \
                auth.MAX_FAILURES


def test_the_failure_counter_forgets_and_stays_bounded() -> None:
    now = [0.0]
    limiter = FailedLogins(limit=3, window=60.0, max_addresses=100, clock=lambda: now[0])
    for _ in range(3):
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") == pytest.approx(60.0)
    now[0] = 61.0
    assert limiter.blocked("10.0.0.1") == 0.0
    for i in range(10_000):  # a spray from many addresses
        limiter.failed(f"10.1.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    limiter.succeeded("10.1.39.15")
    assert len(limiter) == 99


def test_sessions_expire_server_side_and_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    keeper = auth.Auth(lambda: None, clock=lambda: now[0])
    sid, _ = keeper.open_session("a")
    now[0] += auth.SESSION_IDLE - 1
    assert keeper.session(sid) is not None  # used: the idle time starts again
    now[0] += auth.SESSION_IDLE - 1
    assert keeper.session(sid) is not None
    now[0] += auth.SESSION_MAX  # past the absolute limit
    assert keeper.session(sid) is None
    monkeypatch.setattr(auth, "MAX_SESSIONS", 50)
    ids = [keeper.open_session("flood")[0] for _ in range(200)]
    assert len(keeper.sessions) == 50 and keeper.session(ids[0]) is None
    assert keeper.session(ids[-1]) is not None


def test_health_is_open_and_metrics_take_a_viewer_token(system: System,
                                                        tokens: dict[str, str]) -> None:
    with anonymous(base_url=system.url, timeout=30) as client:
        assert client.get("/api/health").json() == {"status": "ok"}
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 401
    with as_role(system, tokens, "viewer") as viewer:
        answer = viewer.get("/metrics")
        assert answer.status_code == 200 and "c1222_" in answer.text
    assert AUTH["Authorization"].startswith("Bearer c1222_")
