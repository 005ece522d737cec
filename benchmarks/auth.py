"""What sign-in costs the head-end (docs/headend.md, "Sign-in and roles"): one Argon2id hash
(a sign-in, an account added) and the per-request check (a bearer token or a session cookie
looked up in storage) against the same request on the open health route, in one process
over the ASGI transport (no sockets: the figures are the app's own time).

    PYTHONPATH=src python benchmarks/auth.py     # rewrites its section of BENCHMARKS.md
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

TITLE = "Head-end sign-in: hashing and the per-request check (benchmarks/auth.py)"
REQUESTS = 200
ROUNDS = 10
HASHES = 30


def _hash_times() -> tuple[float, float]:
    from c1222.headend.auth import hash_password, verify_password

    hashed, checked = [], []
    digest = hash_password("warm-up password")
    for i in range(HASHES):
        started = time.perf_counter()
        digest = hash_password(f"password {i}")
        hashed.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert verify_password(digest, f"password {i}")
        checked.append(time.perf_counter() - started)
    return statistics.median(hashed), statistics.median(checked)


async def _requests(folder: str) -> dict[str, float]:
    import httpx

    from c1222.headend.server import HeadEnd, HeadEndConfig
    from c1222.headend.web import create_app

    os.environ.pop("C1222_HEADEND_ADMIN_TOKEN", None)
    headend = HeadEnd(HeadEndConfig(listen=("127.0.0.1", 0), db=f"sqlite:///{folder}/b.db",
                                    collect_interval=3600, log_interval=3600))
    await headend.start()
    app = create_app(headend)
    password = await app.state.auth.ready()
    out: dict[str, float] = {}
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            signed = await client.post("/api/login", json={"username": "admin",
                                                           "password": password})
            csrf = signed.json()["csrf_token"]
            token = (await client.post("/api/tokens", headers={"X-CSRF-Token": csrf})
                     ).json()["token"]
            cookie = dict(client.cookies)
            client.cookies.clear()
            bearer = {"Authorization": f"Bearer {token}"}
            session = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookie.items())}
            cases = {
                "GET /api/me, bearer token": ("/api/me", bearer),
                "GET /api/me, session cookie": ("/api/me", session),
                "GET /api/health (open: the reference)": ("/api/health", {}),
                "GET /healthz (open, not in the schema)": ("/healthz", {}),
            }
            best = {label: float("inf") for label in cases}
            for _ in range(ROUNDS):  # interleaved: a burst of load hits every case alike
                for label, (path, headers) in cases.items():
                    best[label] = min(best[label], await _time(client, path, headers))
            out.update(best)
            started = time.perf_counter()
            for _ in range(10):
                await client.post("/api/login", json={"username": "admin",
                                                      "password": password})
            out["POST /api/login (Argon2id verify, audit row)"] = \
                (time.perf_counter() - started) / 10
    finally:
        await headend.stop()
    return out


async def _time(client: object, path: str, headers: dict[str, str]) -> float:
    for _ in range(50):  # warm-up
        await client.get(path, headers=headers)  # type: ignore[attr-defined]
    started = time.perf_counter()
    for _ in range(REQUESTS):
        answer = await client.get(path, headers=headers)  # type: ignore[attr-defined]
        assert answer.status_code == 200, answer.text
    return (time.perf_counter() - started) / REQUESTS


def main() -> None:
    hashed, checked = _hash_times()
    with tempfile.TemporaryDirectory() as folder:
        times = asyncio.run(_requests(folder))
    load = os.getloadavg()[0]
    lines = [machine(), "",
             f"In one process over httpx's ASGI transport (no sockets), the best of {ROUNDS} "
             f"interleaved rounds of {REQUESTS} requests per case, SQLite storage; load "
             f"average {load:.1f} at the end (2 cores shared with other work).", "",
             "| what | ms per call |", "|---|---:|",
             f"| Argon2id hash (19 MiB, 2 passes, 1 lane), median of {HASHES} | "
             f"{hashed * 1000:.1f} |",
             f"| Argon2id verify, median of {HASHES} | {checked * 1000:.1f} |"]
    lines += [f"| {label} | {seconds * 1000:.2f} |" for label, seconds in times.items()]
    reference = times["GET /api/health (open: the reference)"]
    token = times["GET /api/me, bearer token"]
    lines += ["", f"A request with a bearer token ({token * 1000:.2f} ms: the gate's lookup of "
              "the token's hash on the storage thread, the role table, the route) against the open "
              f"health route ({reference * 1000:.2f} ms, no check): "
              + (f"the check costs at most {(token - reference) * 1000:.2f} ms"
                 if token > reference else "the check is below what this loaded machine can "
                 "resolve (the authenticated route was the faster)")
              + "; a sign-in is the Argon2id verify and the audit row."]
    write_section(TITLE, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
