"""A Mosquitto broker for the tests: a private instance on a free port of 127.0.0.1.

We always start a private broker when the ``mosquitto`` binary is there (Debian installs it in
/usr/sbin, often outside a user's PATH), so no test depends on the state of the machine's
broker (its retained messages, its configuration, someone else's clients) and a test may stop
and restart it. Without the binary, :func:`broker` falls back to the machine's broker at
127.0.0.1:1883 when one answers (tests that stop or configure the broker then skip; the others
use topics of their own there and clear what they retained); with neither, tests skip, or fail
under ``C1222_REQUIRE_ALL=1``. ``make test`` installs Debian's ``mosquitto``
when it is missing (Makefile ``system-deps``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.interop.tshark import _missing
from tests.servers import free_port

MACHINE_BROKER = ("127.0.0.1", 1883)


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None)


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


class Mosquitto:
    """``mosquitto -c <conf>`` listening on 127.0.0.1:``port``; ``stop()`` / ``start()`` again
    on the same port. ``extra`` lines go into the configuration (e.g. a password file)."""

    private = True

    def __init__(self, workdir: Path, binary: str, extra: Sequence[str] = ()) -> None:
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"
        self.conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
            # started as root, mosquitto would become user "mosquitto" and could not read or
            # write the test's private folder: stay who we are
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            f"log_dest file {self.log}", "log_type error", "log_type warning",
            "log_type notice", *extra]) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not answers(self.host, self.port, 0.5):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {err}{log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on {self.port} in {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class MachineBroker:
    """The machine's broker at 127.0.0.1:1883 (used only when there is no binary)."""

    private = False

    def __init__(self) -> None:
        self.host, self.port = MACHINE_BROKER

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        pass


def broker(workdir: Path, *, private: bool = False,
           extra: Sequence[str] = ()) -> Mosquitto | MachineBroker:
    """A private Mosquitto, else the machine's; ``private=True`` (a test that stops the broker
    or configures it) skips, or fails under C1222_REQUIRE_ALL=1, without the binary."""
    binary = mosquitto_path()
    if binary is not None:
        return Mosquitto(workdir, binary, extra)
    if not private and not extra and answers(*MACHINE_BROKER):
        return MachineBroker()
    _missing("mosquitto is not installed (Debian: apt-get install mosquitto; `make test` "
             "does it)" + ("" if private else " and no broker answers at 127.0.0.1:1883"))
    raise AssertionError("unreachable")
