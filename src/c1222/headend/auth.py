"""Sign-in, roles and the audit log of the head-end's console and REST API (docs/headend.md,
"Sign-in and roles").

* Accounts live in the head-end's storage (schema 6); passwords are hashed with Argon2id
  (argon2-cffi), API tokens (``c1222_...``, 256 random bits) with SHA-256. Nothing secret is
  stored or logged in the clear.
* The console signs in with ``POST /api/login``: a random session id in a cookie (HttpOnly,
  SameSite=Strict), kept server-side with an idle and an absolute expiry, and a CSRF token
  that every unsafe request made with the cookie must carry in ``X-CSRF-Token``. Scripts send
  ``Authorization: Bearer <token>`` (no CSRF: a browser never adds that header by itself).
* :data:`POLICY` is the one table of who may do what; :func:`required_role` reads it,
  default-deny: a route not in it needs ``viewer`` to read and ``admin`` for anything else,
  so a route added later is safe until it is listed. :class:`Gate` (middleware) authenticates
  every request to a route that is not public before anything reads it; :meth:`Auth.guard`
  (an app-wide dependency) checks the role; the gate then records every unsafe request that
  got past authentication in the audit log (sign-ins are recorded by the sign-in route).
* On first start with no accounts, :meth:`Auth.ready` creates ``admin`` with a generated
  password and returns it to be shown once. ``C1222_HEADEND_ADMIN_TOKEN`` (at least 32
  characters) provisions an API token of ``admin`` at start (containers, CI).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from c1222.errors import ConfigurationError
from c1222.headend.storage import ROLES, AuditRecord, StorageError, UserRecord

from fastapi import Request  # at run time: FastAPI reads the guard's signature

__all__ = [
    "ADMIN_PROCEDURES", "ADMIN_TOKEN_ENV", "COOKIE", "CSRF_HEADER", "POLICY", "PUBLIC", "ROLES",
    "SERVICE_ROLES", "Auth", "FailedLogins", "Gate", "Principal", "hash_password",
    "hash_token", "may", "new_password", "new_token", "public", "required_role",
    "verify_password",
]

log = logging.getLogger("c1222.headend.auth")

COOKIE = "c1222_session"
CSRF_HEADER = "X-CSRF-Token"
ADMIN_TOKEN_ENV = "C1222_HEADEND_ADMIN_TOKEN"
#: The account made on first start.
FIRST_ADMIN = "admin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: A session ends this long after its last request, and at the latest this long after sign-in.
SESSION_IDLE = 8 * 3600.0
SESSION_MAX = 24 * 3600.0
#: Sessions held at once (the oldest go first): a flood of sign-ins cannot grow memory.
MAX_SESSIONS = 10_000
#: Failed sign-ins from one address within the window before it gets 429; addresses tracked.
MAX_FAILURES = 10
FAILURE_WINDOW = 300.0
MAX_ADDRESSES = 4096
#: Argon2 hashes computed at once (each takes ~20 MiB and a core for ~30 ms).
HASHING_AT_ONCE = 2
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
TOKEN_PREFIX = "c1222_"

# ------------------------------------------------------------------------------ the policy

_RANK = {role: i for i, role in enumerate(ROLES)}

#: Service name -> the weakest role that may send it (POST .../services/{name}).
SERVICE_ROLES: dict[str, str] = {
    "identify": "operator", "read": "operator", "resolve": "operator", "trace": "operator",
    "logon": "engineer", "security": "engineer", "logoff": "engineer", "wait": "engineer",
    "write": "engineer", "procedure": "engineer",
    "terminate": "admin", "disconnect": "admin", "deregister": "admin",
}
#: Procedures only an admin may run, as (manufacturer?, number): remote connect/disconnect
#: (this project's manufacturer procedure 0, c1222.tables.procedures.MfgProc) and standard
#: procedure 21, DIRECT_LOAD_CONTROL. Any other procedure: engineer.
ADMIN_PROCEDURES = frozenset({(True, 0), (False, 21)})


def _service_rule(params: Mapping[str, str], body: Any) -> tuple[str, str]:
    name = params.get("name", "")
    role = SERVICE_ROLES.get(name, "admin")  # an unknown service: 422 later, for admins only
    if name == "procedure" and isinstance(body, dict):
        number, mfg = body.get("number"), body.get("mfg") is True
        if isinstance(number, int) and (mfg, number) in ADMIN_PROCEDURES:
            return "admin", "remote connect/disconnect" if mfg else "direct load control"
    return role, name or "service"


Rule = tuple[str, str] | Callable[[Mapping[str, str], Any], tuple[str, str]]

#: (method, route path) -> (weakest role, action named in 403s and the audit log), or a
#: function of the path parameters and the JSON body giving them. None: open to anyone.
#: Not listed: viewer for GET/HEAD, admin for the rest (default-deny).
POLICY: dict[tuple[str, str], Rule | None] = {
    ("GET", "/"): None,  # the console page: its script shows the sign-in form
    ("GET", "/static"): None,  # the console's scripts and styles (nothing secret)
    ("GET", "/api/health"): None,
    ("GET", "/healthz"): None,
    ("POST", "/api/login"): None,
    ("POST", "/api/logout"): ("viewer", "sign-out"),
    ("GET", "/api/me"): ("viewer", "who am I"),
    ("POST", "/api/tokens"): ("viewer", "make an API token"),
    # Prometheus scrapes with a bearer token of any account (a viewer is enough).
    ("GET", "/metrics"): ("viewer", "metrics"),
    ("GET", "/api/audit"): ("engineer", "read the audit log"),
    ("GET", "/api/users"): ("admin", "list accounts"),
    ("POST", "/api/users"): ("admin", "add an account"),
    ("DELETE", "/api/users/{name}"): ("admin", "remove an account"),
    ("POST", "/api/nodes/{ap_title}/services/{name}"): _service_rule,
    ("POST", "/api/nodes/{ap_title}/collect"): ("operator", "collect"),
    ("POST", "/api/network/nodes/{ap_title}/trace"): ("operator", "network trace"),
    ("POST", "/api/network/nodes/{ap_title}/resolve"): ("operator", "network resolve"),
    # a notice is a write of the meter's MT2: what an engineer may do
    ("PUT", "/api/nodes/{ap_title}/notice"): ("engineer", "send notice"),
    ("DELETE", "/api/nodes/{ap_title}/notice"): ("engineer", "clear notice"),
    # reading a table (the table editor's start) is a Read of the meter; writing it back a Write
    ("GET", "/api/nodes/{ap_title}/tables/{number}"): ("operator", "read a table"),
    ("PUT", "/api/nodes/{ap_title}/tables/{number}"): ("engineer", "write a table"),
}
#: The routes anyone may use (none has a path parameter), and the static files' prefix.
PUBLIC = frozenset(k for k, v in POLICY.items() if v is None)
PUBLIC_PREFIX = "/static/"


def public(method: str, path: str) -> bool:
    """Whether a request path is open to anyone (any other path, even one that is no
    route, needs credentials: a 401 tells an anonymous client nothing about the routes)."""
    method = "GET" if method == "HEAD" else method
    return (method, path) in PUBLIC or (method == "GET" and path.startswith(PUBLIC_PREFIX))


def required_role(method: str, path: str, params: Mapping[str, str] | None = None,
                  body: Any = None) -> tuple[str, str] | None:
    """The weakest role that may make this request and the action's name; None: public."""
    method = "GET" if method == "HEAD" else method
    if (method, path) in POLICY:
        rule = POLICY[(method, path)]
        if rule is None:
            return None
        return rule(params or {}, body) if callable(rule) else rule
    if method in SAFE_METHODS:
        return "viewer", f"{method} {path}"
    return "admin", f"{method} {path}"


def may(role: str, needed: str) -> bool:
    return _RANK.get(role, -1) >= _RANK[needed]


# ------------------------------------------------------------------------------ secrets

_hasher: Any = None


def _argon2() -> Any:
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        # OWASP's Argon2id minimum (19 MiB, 2 passes): a sign-in costs ~30 ms of one core.
        _hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
    return _hasher


def hash_password(password: str) -> str:
    return str(_argon2().hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_argon2().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    return secrets.token_urlsafe(15)  # 120 bits, 20 characters


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError("a user name is 1-64 letters, digits or . _ @ - (starting with a "
                         "letter or digit)")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


# ------------------------------------------------------------------------------ sessions


@dataclass
class Session:
    user: str
    csrf: str
    created: float
    seen: float


@dataclass(frozen=True)
class Principal:
    """Who made a request: the account, its role and how it signed in."""

    user: str
    role: str
    via: str  # "session" or "token"
    session_id: str | None = None


class FailedLogins:
    """Failed sign-ins per address in a sliding window, for at most ``max_addresses``
    addresses (the least recently failing are forgotten first): bounded memory."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW,
                 max_addresses: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_addresses, self.clock = (limit, window,
                                                                    max_addresses, clock)
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: now)."""
        times = self._failures.get(address)
        if not times:
            return 0.0
        now = self.clock()
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return max(0.0, self.window - (now - times[0]))

    def failed(self, address: str) -> None:
        times = self._failures.pop(address, None) or deque(maxlen=self.limit)
        times.append(self.clock())
        self._failures[address] = times
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def __len__(self) -> int:
        return len(self._failures)


class Auth:
    """Accounts, sessions and tokens of one head-end app (made by ``create_app``)."""

    def __init__(self, storage: Callable[[], Any], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._storage = storage
        self.clock = clock
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.failures = FailedLogins(clock=clock)
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)
        self._ready = False
        self._ready_lock = asyncio.Lock()
        #: Called with the generated password when :meth:`ready` makes the first admin
        #: lazily (a request came before the CLI asked); by default a log warning.
        self.on_password: Callable[[str], None] = lambda password: log.warning(
            "no accounts: made %r with password %s (shown once)", FIRST_ADMIN, password)

    def storage(self) -> Any:
        return self._storage()

    async def ready(self) -> str | None:
        """Make the first admin when there are no accounts (its generated password is
        returned, once) and provision ``C1222_HEADEND_ADMIN_TOKEN``. Idempotent."""
        async with self._ready_lock:
            if self._ready:
                return None
            storage = self.storage()
            password = None
            if await storage.count_users() == 0:
                password = new_password()
                if not await self._add(storage, FIRST_ADMIN, password):
                    password = None  # another head-end on this database made it first
            await self._provision_token(storage)
            self._ready = True
            return password

    async def _provision_token(self, storage: Any) -> None:
        token = os.environ.get(ADMIN_TOKEN_ENV, "")
        if not token:
            return
        if len(token) < 32 or not token.isprintable() or token.strip() != token:
            raise ConfigurationError(f"{ADMIN_TOKEN_ENV} must be at least 32 printable "
                                     "characters")
        digest = hash_token(token)
        if await storage.token_user(digest) is not None:
            return
        user = await storage.get_user(FIRST_ADMIN)
        if user is None:
            await self._add(storage, FIRST_ADMIN, new_password())
        elif user.role != "admin":
            raise ConfigurationError(f"{ADMIN_TOKEN_ENV}: account {FIRST_ADMIN!r} is not an "
                                     "admin")
        try:
            await storage.add_token(FIRST_ADMIN, digest, ADMIN_TOKEN_ENV,
                                    dt.datetime.now(dt.timezone.utc))
        except StorageError:  # another head-end on this database added it meanwhile
            if await storage.token_user(digest) is None:
                raise

    async def _add(self, storage: Any, name: str, password: str) -> bool:
        """Add an admin; False when the name exists (also when another head-end sharing the
        database added it between our check and our insert)."""
        record = UserRecord(name, "admin", await self.hash(password),
                            dt.datetime.now(dt.timezone.utc))
        try:
            return bool(await storage.add_user(record))
        except StorageError:
            if await storage.get_user(name) is None:
                raise
            return False

    async def hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(hash_password, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._hashing:
            return await asyncio.to_thread(verify_password, password_hash, password)

    # -- sessions ------------------------------------------------------------------------

    def open_session(self, user: str) -> tuple[str, Session]:
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), now, now)
        self.sessions[sid] = session
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return sid, session

    def session(self, sid: str) -> Session | None:
        session = self.sessions.get(sid)
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > SESSION_IDLE or now - session.created > SESSION_MAX:
            del self.sessions[sid]
            return None
        session.seen = now
        self.sessions.move_to_end(sid)
        return session

    def close_session(self, sid: str | None) -> None:
        if sid:
            self.sessions.pop(sid, None)

    def close_sessions_of(self, user: str) -> None:
        for sid in [s for s, v in self.sessions.items() if v.user == user]:
            del self.sessions[sid]

    # -- authentication ------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Principal:
        """The principal of a request, or an HTTPException: 401 without valid credentials,
        403 for a cookie-authenticated unsafe request without its CSRF token."""
        from fastapi import HTTPException

        await self.ready()
        storage = self.storage()
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token or len(token) > 512:
                raise _unauthorized("use Authorization: Bearer <token>")
            user = await storage.token_user(hash_token(token))
            if user is None:
                raise _unauthorized("unknown or revoked API token")
            return Principal(user.name, user.role, "token")
        sid = request.cookies.get(COOKIE)
        session = self.session(sid) if sid and len(sid) <= 128 else None
        if session is None:
            raise _unauthorized("sign in (POST /api/login) or send an API token")
        user = await storage.get_user(session.user)
        if user is None:  # removed since: the session ends with the account
            self.close_session(sid)
            raise _unauthorized("the account no longer exists")
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode("utf-8", "replace"),
                                       session.csrf.encode()):
                raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header (the "
                                         "token POST /api/login or GET /api/me gave)")
        return Principal(user.name, user.role, "session", sid)

    async def guard(self, request: Request) -> None:
        """The app-wide dependency: check the role against :data:`POLICY` (authenticating
        here too when :class:`Gate` did not). Leaves the action in the request's scope for
        the audit log."""
        from fastapi import HTTPException

        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        method = request.method
        body: Any = None
        if method not in SAFE_METHODS:
            body = await _json_body(request)
        params = {k: str(v) for k, v in request.path_params.items()}
        rule = required_role(method, path, params, body)
        if rule is None:
            return
        principal = request.scope.get(PRINCIPAL)
        if principal is None:
            principal = await self.authenticate(request)
            request.scope[PRINCIPAL] = principal
        needed, action = rule
        request.scope[AUDIT] = {"user": principal.user, "action": action, "body": body,
                                "params": params}
        if not may(principal.role, needed):
            raise HTTPException(403, f"{principal.user} ({principal.role}) may not {action}: "
                                     f"that needs the {needed} role")


#: Keys of the request scope: who made the request, and what the audit log records.
PRINCIPAL = "c1222.principal"
AUDIT = "c1222.audit"


def _unauthorized(detail: str) -> Exception:
    from fastapi import HTTPException

    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def _json_body(request: Request) -> Any:
    """The request's JSON body (read under the app's body limit), None if it has none or it
    is not JSON (the route answers that with a 422)."""
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


# ------------------------------------------------------------------------------ audit

#: Body fields never written to the audit log (Security passwords, Logon user names).
SECRET_FIELDS = frozenset({"password", "user", "token", "new_password"})
MAX_PARAMS_TEXT = 2000
#: Response bytes the audit keeps to name the result (response codes, the error).
MAX_RESULT_BODY = 256 * 1024


def audit_params(body: Any, params: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The parameters of a command as JSON text, secrets replaced by ``"***"``."""
    out: dict[str, Any] = {k: v for k, v in params.items() if k != "ap_title"}
    out.update({k: v[:100] for k, v in list(query.items())[:20]})
    if isinstance(body, dict):
        for key, value in list(body.items())[:50]:
            out[str(key)[:50]] = "***" if key in SECRET_FIELDS else value
    if not out:
        return None
    text = json.dumps(out, default=str, ensure_ascii=False)
    return text if len(text) <= MAX_PARAMS_TEXT else text[:MAX_PARAMS_TEXT - 1] + "…"


def result_text(status: int, body: bytes) -> str:
    """What the command did, from its response: the meter's response codes, else the
    error's detail."""
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        codes = answer.get("response_codes")
        if isinstance(codes, list) and codes:
            return ",".join(str(c) for c in codes)[:200]
        for key in ("detail", "error"):
            value = answer.get(key)
            if isinstance(value, str) and value:
                return value[:200]
            if isinstance(value, list) and value:
                return json.dumps(value, default=str)[:200]
        if "stored" in answer:
            return f"stored {answer['stored']}"
    return "ok" if 200 <= status < 300 else f"HTTP {status}"


def client_address(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


class Gate:
    """ASGI middleware in front of every route (API, console, ``/docs``, ``/openapi.json``,
    routers included later): requests to a path that is not :func:`public` must authenticate
    (401, or 403 for a missing CSRF token) before anything else reads them, the body
    included; every unsafe request that got past it (allowed or refused with 403) goes to
    the audit log with its status and result."""

    def __init__(self, app: Any, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from fastapi import HTTPException
        from fastapi.responses import JSONResponse
        from starlette.requests import Request as StarletteRequest

        method = scope.get("method", "GET")
        if not public(method, scope.get("path", "")):
            try:
                scope[PRINCIPAL] = await self.auth.authenticate(StarletteRequest(scope))
            except HTTPException as exc:
                await JSONResponse({"detail": exc.detail}, exc.status_code,
                                   headers=exc.headers)(scope, receive, send)
                return
        if method in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 0
        kept = bytearray()

        async def capture(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and len(kept) < MAX_RESULT_BODY:
                kept.extend(message.get("body", b"")[:MAX_RESULT_BODY - len(kept)])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            entry = scope.get(AUDIT)
            if entry is not None:
                await self._record(scope, entry, status or 500, bytes(kept))

    async def _record(self, scope: dict[str, Any], entry: dict[str, Any], status: int,
                      body: bytes) -> None:
        from urllib.parse import parse_qsl

        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        title = entry["params"].get("ap_title")
        record = AuditRecord(
            time=dt.datetime.now(dt.timezone.utc), user=entry["user"],
            address=client_address(scope), action=entry["action"], status=status,
            ap_title=_title(title) if title else None,
            params=audit_params(entry["body"], entry["params"], query),
            result=result_text(status, body))
        try:
            await self.auth.storage().log_audit(record)
        except Exception:  # noqa: BLE001 - the command ran; a lost audit row is logged
            log.exception("audit entry not stored: %s", record)


def _title(text: str) -> str:
    """The absolute AP title when ``text`` is one, else the text (cut)."""
    from c1222.codec.ber import Uid

    try:
        return str(Uid.parse(text).absolute())
    except Exception:  # noqa: BLE001 - any malformed title is kept as given
        return text[:100]


def principal_of(request: Request) -> Principal:
    """The principal the guard found (a route behind :func:`Auth.guard` only)."""
    return request.scope[PRINCIPAL]  # type: ignore[no-any-return]
