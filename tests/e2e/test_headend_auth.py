"""`c1222 headend` and `c1222 headend user ...` as an operator runs them: the first start
prints the generated admin password once (and only its hash is stored), accounts are added,
listed and removed from the command line (passwords from a prompt or stdin, never an
argument), a token made by the CLI works against the running head-end and dies with its
account (docs/headend.md, "Sign-in and roles")."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from c1222.headend.auth import ADMIN_TOKEN_ENV
from tests.auth import anonymous
from tests.e2e.procs import C1222, Running

PASSWORD_LINE = re.compile(r"made user admin \(role admin\) with password (\S+)")


def cli(*args: str, stdin: str = "", env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([*C1222, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def start(db: str) -> tuple[Running, str]:
    # without the tests' token: the head-end starts as on a fresh install
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", db, "--collect-interval", "60"], env={ADMIN_TOKEN_ENV: ""})
    web = headend.wait_for(r"console at http (\S+):(\d+)")
    return headend, f"http://{web.group(1)}:{web.group(2)}"


def test_the_first_start_prints_the_admin_password_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    headend, web = start(db)
    try:
        password = PASSWORD_LINE.search("\n".join(headend.lines))
        assert password, "\n".join(headend.lines)
        secret = password.group(1)
        with anonymous(base_url=web, timeout=30) as client:
            assert client.get("/api/nodes").status_code == 401
            assert client.post("/api/login", data={"username": "admin", "password": secret}
                               ).status_code == 200
            assert client.get("/api/nodes").status_code == 200
    finally:
        assert headend.stop() == 0
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("h.db*"))
    assert secret.encode() not in stored and b"$argon2id$" in stored
    again, _ = start(db)
    try:
        assert again.stop() == 0
        assert not any("password" in line for line in again.lines), again.lines
    finally:
        again.proc.poll() is None and again.kill()


def test_accounts_from_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    added = cli("headend", "user", "add", "olga", "--role", "operator", "--password-stdin",
                "--db", db, stdin="operator-pw-1\n")
    assert added.returncode == 0 and "added olga (operator)" in added.stdout, added.stderr
    twice = cli("headend", "user", "add", "olga", "--role", "viewer", "--password-stdin",
                "--db", db, stdin="operator-pw-1\n")
    assert twice.returncode == 1 and "user 'olga' exists" in twice.stderr
    role = cli("headend", "user", "add", "ivan", "--role", "root", "--password-stdin",
               "--db", db, stdin="whatever-1\n")
    assert role.returncode == 2 and "'root' is not one of" in role.stderr
    on_line = cli("headend", "user", "add", "ivan", "--role", "viewer", "--password",
                  "secret-pw-1", "--db", db)
    assert on_line.returncode == 2 and "No such option" in on_line.stderr
    short = cli("headend", "user", "add", "ivan", "--role", "viewer", "--password-stdin",
                "--db", db, stdin="short\n")
    assert short.returncode == 2 and "8 to 256 characters" in short.stderr
    for name in ("", "-x", "a b", "x" * 65):
        bad = cli("headend", "user", "add", name, "--role", "viewer", "--password-stdin",
                  "--db", db, stdin="whatever-1\n")
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, name
    missing = cli("headend", "user", "remove", "nobody", "--db", db)
    assert missing.returncode == 1 and "no user 'nobody'" in missing.stderr
    assert cli("headend", "user", "token", "nobody", "--db", db).returncode == 1
    listed = cli("headend", "user", "list", "--db", db)
    assert re.search(r"^olga\toperator\t", listed.stdout, re.M), listed.stdout
    assert "operator-pw-1" not in listed.stdout
    made = cli("headend", "user", "token", "olga", "--label", "scripts", "--db", db)
    assert made.returncode == 0
    token = made.stdout.strip()
    assert token.startswith("c1222_")

    headend, web = start(db)  # accounts exist: no generated password
    try:
        assert not any(PASSWORD_LINE.search(line) for line in headend.lines)
        bearer = {"Authorization": f"Bearer {token}"}
        with anonymous(base_url=web, timeout=30, headers=bearer) as client:
            assert client.get("/api/nodes").status_code == 200
            assert client.get("/api/me").json()["role"] == "operator"
            assert client.get("/api/audit").status_code == 403  # an operator's token
            removed = cli("headend", "user", "remove", "olga", "--db", db)
            assert removed.returncode == 0, removed.stderr
            assert client.get("/api/nodes").status_code == 401  # the token died with it
    finally:
        assert headend.stop() == 0
    # there were accounts: the start made no admin
    assert "no accounts" in cli("headend", "user", "list", "--db", db).stdout
    assert cli("headend", "user", "add", "root1", "--role", "admin", "--password-stdin",
               "--db", db, stdin="admin-pw-12\n").returncode == 0
    last = cli("headend", "user", "remove", "root1", "--db", db)
    assert last.returncode == 1 and "last admin" in last.stderr
