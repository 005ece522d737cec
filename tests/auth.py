"""The credentials every test uses to talk to a head-end: ONE place (docs/headend.md,
"Sign-in and roles").

Importing this (tests/conftest.py does, before any test runs) puts an API token of ``admin``
in ``C1222_HEADEND_ADMIN_TOKEN``: every head-end the tests start, in-process or as a
``c1222 headend`` child process (which inherits the environment), provisions it at start.
Every httpx client then sends it by default (``httpx.Client``/``AsyncClient``, so also
``httpx.get`` and friends), and every Playwright context made by the browser fixture sends
it too. A test that must be anonymous or sign in as someone else uses :func:`anonymous`.
The tests of sign-in itself (tests/unit/headend/test_auth.py, tests/browser/
test_console_auth.py) sign in through the form and the API as a user would.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import httpx

from c1222.headend.auth import ADMIN_TOKEN_ENV

#: The token, stable for the whole session (child processes see the same one).
TOKEN = os.environ.get(ADMIN_TOKEN_ENV) or "c1222_tests_" + secrets.token_urlsafe(32)
os.environ[ADMIN_TOKEN_ENV] = TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Marks a client made by anonymous(): no default credentials.
_ANONYMOUS = "x-c1222-test-anonymous"


def _with_token(init: Any) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        headers = httpx.Headers(kwargs.pop("headers", None))
        if headers.pop(_ANONYMOUS, None) is None and "authorization" not in headers:
            headers["Authorization"] = AUTH["Authorization"]
        init(self, *args, headers=headers, **kwargs)

    __init__.__wrapped__ = init  # type: ignore[attr-defined]
    return __init__


if not hasattr(httpx.Client.__init__, "__wrapped__"):
    httpx.Client.__init__ = _with_token(httpx.Client.__init__)  # type: ignore[method-assign]
    httpx.AsyncClient.__init__ = _with_token(  # type: ignore[method-assign]
        httpx.AsyncClient.__init__)


def anonymous(**kwargs: Any) -> httpx.Client:
    """An httpx client without the tests' token (no credentials, or sign in with it)."""
    headers = dict(kwargs.pop("headers", None) or {})
    headers[_ANONYMOUS] = "1"
    return httpx.Client(headers=headers, **kwargs)


def async_anonymous(**kwargs: Any) -> httpx.AsyncClient:
    headers = dict(kwargs.pop("headers", None) or {})
    headers[_ANONYMOUS] = "1"
    return httpx.AsyncClient(headers=headers, **kwargs)


def add_user(base_url: str, name: str, role: str, password: str = "password-1") -> str:
    """Make an account through the API (as the tests' admin); its password."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        answer = client.post("/api/users", json={"name": name, "role": role,
                                                  "password": password})
        assert answer.status_code in (201, 409), answer.text
    return password


def session(base_url: str, name: str, password: str) -> tuple[httpx.Client, str]:
    """A client signed in with the form (cookie), and its CSRF token."""
    client = anonymous(base_url=base_url, timeout=30)
    answer = client.post("/api/login", data={"username": name, "password": password})
    assert answer.status_code == 200, answer.text
    return client, answer.json()["csrf_token"]
