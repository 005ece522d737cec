"""The sign-in routes of the head-end (docs/headend.md, "Sign-in and roles"): ``POST
/api/login`` and ``/api/logout``, ``GET /api/me``, ``POST /api/tokens``, the accounts
(``/api/users``, admin), the audit log (``GET /api/audit``, engineer and admin) and the open
health check (``GET /api/health``, ``/healthz``). Who may call which is in
:data:`c1222.headend.auth.POLICY`, applied to every route by ``create_app``."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Body, HTTPException, Path as PathParam, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from c1222.headend.auth import (
    COOKIE, SERVICE_ROLES, Auth, check_name, check_password, check_role, client_address,
    hash_token, may, new_token, principal_of, required_role,
)
from c1222.headend.storage import AuditRecord, UserRecord
from c1222.headend.params import utc_query

if TYPE_CHECKING:
    from c1222.headend.storage import AuditRecord as AuditRow

__all__ = ["router", "abilities"]

#: Most audit entries one request returns.
MAX_AUDIT = 1000
MAX_ID = 2**63 - 1
#: A hash to verify against when the user is unknown, so the answer takes as long.
_DUMMY: list[str] = []


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class SignedIn(BaseModel):
    user: str
    role: str
    via: str = Field(description="session (cookie) or token")
    csrf_token: str | None = Field(None, description="send it in X-CSRF-Token with every "
                                                     "unsafe request made with the cookie")
    may: dict[str, Any] = Field(description="what the role may do (the console hides the "
                                            "rest)")


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    label: str = Field("", max_length=64, description="what the token is for")


class TokenOut(BaseModel):
    user: str
    label: str
    token: str = Field(description="shown once: only its hash is stored")


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64)
    role: str
    password: str = Field(min_length=8, max_length=256)

    _name = field_validator("name")(classmethod(lambda cls, v: check_name(v)))
    _role = field_validator("role")(classmethod(lambda cls, v: check_role(v)))


class UserOut(BaseModel):
    name: str
    role: str
    created_at: dt.datetime


class AuditOut(BaseModel):
    id: int
    time: dt.datetime
    user: str | None = Field(description="the account (null: a failed sign-in)")
    address: str = Field(description="the client's IP address")
    action: str = Field(description="e.g. read, procedure, remote connect/disconnect, sign-in")
    ap_title: str | None = Field(description="the meter, when the command named one")
    params: Any = Field(description="the parameters (secrets replaced by ***)")
    status: int = Field(description="the HTTP status answered")
    result: str = Field(description="the meter's response codes, or the error")


class ErrorBody(BaseModel):
    detail: Any


def abilities(role: str) -> dict[str, Any]:
    """What ``role`` may do, from :data:`~c1222.headend.auth.POLICY` (the console shows only
    these buttons; the API enforces them either way)."""
    def can(method: str, path: str, body: Any = None, **params: str) -> bool:
        rule = required_role(method, path, params, body)
        return rule is None or may(role, rule[0])

    services = "/api/nodes/{ap_title}/services/{name}"
    return {
        "services": {name: can("POST", services, name=name) for name in SERVICE_ROLES},
        "remote_switch": can("POST", services, {"number": 0, "mfg": True}, name="procedure"),
        "collect": can("POST", "/api/nodes/{ap_title}/collect"),
        "network": can("POST", "/api/network/nodes/{ap_title}/trace"),
        "notices": can("PUT", "/api/nodes/{ap_title}/notice"),
        "tables_read": can("GET", "/api/nodes/{ap_title}/tables/{number}"),
        "tables_write": can("PUT", "/api/nodes/{ap_title}/tables/{number}"),
        "audit": can("GET", "/api/audit"),
        "users": can("POST", "/api/users"),
    }


def _audit_json(row: AuditRow) -> dict[str, Any]:
    try:
        params = json.loads(row.params) if row.params else None
    except ValueError:
        params = row.params
    return {"id": row.id, "time": row.time, "user": row.user, "address": row.address,
            "action": row.action, "ap_title": row.ap_title, "params": params,
            "status": row.status, "result": row.result}


async def _credentials(request: Request) -> Credentials:
    """The sign-in form (urlencoded) or JSON body; a 422 never echoes it."""
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/x-www-form-urlencoded":
            form = parse_qs(raw.decode("utf-8"), max_num_fields=10, errors="strict")
            data: Any = {k: v[0] for k, v in form.items() if k in ("username", "password")}
        else:
            data = json.loads(raw)
        return Credentials.model_validate(data)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise HTTPException(422, [{"loc": ["body"], "type": "value_error",
                                   "msg": "give username and password, as a form or JSON "
                                          "(strings)"}]) from None


def router(auth: Auth) -> APIRouter:
    routes = APIRouter(tags=["sign-in"])
    storage = auth.storage

    async def audit(request: Request, user: str | None, action: str, status: int,
                    result: str, params: dict[str, Any] | None = None) -> None:
        await storage().log_audit(AuditRecord(
            time=dt.datetime.now(dt.timezone.utc), user=user,
            address=client_address(request.scope), action=action, status=status,
            params=json.dumps(params) if params else None, result=result))

    @routes.get("/api/health", summary="Health check (open)")
    async def health() -> dict[str, str]:
        """`{"status": "ok"}` while the head-end serves; no credentials needed."""
        return {"status": "ok"}

    @routes.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @routes.post(
        "/api/login", response_model=SignedIn, summary="Sign in (sets the session cookie)",
        responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody},
                   429: {"model": ErrorBody, "description": "too many failed sign-ins from "
                                                            "this address"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": Credentials.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": Credentials.model_json_schema()},
        }}})
    async def login(request: Request) -> Any:
        """`username` and `password` as a form or JSON. Sets the session cookie (HttpOnly,
        SameSite=Strict) and returns the CSRF token for `X-CSRF-Token`. Failed attempts are
        audited and limited per address (429 with Retry-After)."""
        address = client_address(request.scope)
        wait = auth.failures.blocked(address)
        if wait:
            raise HTTPException(429, "too many failed sign-ins from this address; try later",
                                headers={"Retry-After": str(int(wait) + 1)})
        given = await _credentials(request)
        await auth.ready()
        user = await storage().get_user(given.username)
        if not _DUMMY:
            _DUMMY.append(await auth.hash("not a password of anyone"))
        good = await auth.verify(user.password_hash if user else _DUMMY[0], given.password)
        if user is None or not good:
            auth.failures.failed(address)
            await audit(request, None, "sign-in", 401, "bad user name or password",
                        {"username": given.username})
            raise HTTPException(401, "bad user name or password")
        auth.failures.succeeded(address)
        auth.close_session(request.cookies.get(COOKIE))  # a fresh id at every sign-in
        sid, session = auth.open_session(user.name)
        await audit(request, user.name, "sign-in", 200, "ok")
        body = {"user": user.name, "role": user.role, "via": "session",
                "csrf_token": session.csrf, "may": abilities(user.role)}
        response = JSONResponse(body)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    @routes.post("/api/logout", summary="Sign out (ends the session)")
    async def logout(request: Request) -> JSONResponse:
        principal = principal_of(request)
        auth.close_session(principal.session_id)
        response = JSONResponse({"signed_out": principal.via == "session"})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @routes.get("/api/me", response_model=SignedIn, summary="Who is signed in")
    async def me(request: Request) -> dict[str, Any]:
        """The account, its role, what it may do, and (with the cookie) the CSRF token."""
        principal = principal_of(request)
        session = auth.sessions.get(principal.session_id or "")
        return {"user": principal.user, "role": principal.role, "via": principal.via,
                "csrf_token": session.csrf if session else None,
                "may": abilities(principal.role)}

    @routes.post("/api/tokens", response_model=TokenOut, status_code=201,
                 summary="Make an API token for yourself",
                 responses={422: {"model": ErrorBody}})
    async def make_token(request: Request,
                         body: Annotated[TokenIn | None, Body()] = None) -> dict[str, Any]:
        """A bearer token of the signed-in account (same role), shown once."""
        principal = principal_of(request)
        label = body.label if body else ""
        token = new_token()
        made = await storage().add_token(principal.user, hash_token(token), label,
                                         dt.datetime.now(dt.timezone.utc))
        if made is None:  # pragma: no cover - the account was removed meanwhile
            raise HTTPException(401, "the account no longer exists")
        return {"user": principal.user, "label": label, "token": token}

    @routes.get("/api/users", response_model=list[UserOut], summary="Accounts (admin)")
    async def list_users() -> list[dict[str, Any]]:
        return [{"name": u.name, "role": u.role, "created_at": u.created_at}
                for u in await storage().list_users()]

    @routes.post("/api/users", response_model=UserOut, status_code=201,
                 summary="Add an account (admin)",
                 responses={409: {"model": ErrorBody}, 422: {"model": ErrorBody}})
    async def add_user(body: UserIn) -> dict[str, Any]:
        check_password(body.password)
        record = UserRecord(body.name, body.role, await auth.hash(body.password),
                            dt.datetime.now(dt.timezone.utc))
        if not await storage().add_user(record):
            raise HTTPException(409, f"user {body.name!r} exists")
        return {"name": record.name, "role": record.role, "created_at": record.created_at}

    @routes.delete("/api/users/{name}", summary="Remove an account (admin)",
                   responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
    async def remove_user(name: Annotated[str, PathParam(max_length=64)]) -> dict[str, Any]:
        """Its API tokens and sessions end with it. The last admin cannot be removed."""
        user = await storage().get_user(name)
        if user is None:
            raise HTTPException(404, f"no user {name!r}")
        if user.role == "admin" and await storage().count_users("admin") <= 1:
            raise HTTPException(409, "the last admin cannot be removed")
        await storage().remove_user(name)
        auth.close_sessions_of(name)
        return {"removed": name}

    @routes.get("/api/audit", response_model=list[AuditOut], tags=["audit"],
                summary="The audit log, newest first (engineer, admin)")
    async def audit_log(
        user: str | None = Query(None, max_length=64, description="only this account's"),
        ap_title: str | None = Query(None, max_length=200, description="only this meter's"),
        since: dt.datetime | None = Query(None, description="ISO 8601 (UTC if no zone)"),
        until: dt.datetime | None = Query(None, description="exclusive"),
        limit: int = Query(100, ge=1, le=MAX_AUDIT),
        before_id: int | None = Query(None, ge=1, le=MAX_ID, description="page: the last "
                                                                         "id seen"),
    ) -> list[dict[str, Any]]:
        """Every unsafe command (services, writes, procedures, collections, notices, account
        changes; allowed or refused) and every sign-in: who, from where, when, which meter,
        the parameters (secrets hidden), the HTTP status and the meter's response codes."""
        from c1222.headend.auth import _title


        rows = await storage().audit(user=user, ap_title=_title(ap_title) if ap_title else None,
                                     since=utc_query(since, "since"), until=utc_query(until, "until"),
                                     limit=limit, before_id=before_id)
        return [_audit_json(r) for r in rows]

    return routes

