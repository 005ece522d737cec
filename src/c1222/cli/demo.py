"""`c1222 demo`: the whole system on loopback — head-end, master relay, relay, meter and
in-home display — and `c1222 samples`: a capture of every C12.22 service, made by our own encoder.

The demo starts each part as its own process, exactly as a user would (`c1222 relay --master`,
`c1222 headend --master-relay`, `c1222 relay --upstream`, `c1222 ihd`, `c1222 meter --relay`), all
secured with EAX' (mode 2, a demo key), the head-end on SQLite, the meter running the household
day profile faster than real time. The meter registers through the relay; the master relay tells
the head-end, which reads the meter through both relays by its AP title (docs/network.md). It
prints where to look, and the console's credentials (``admin`` with a fresh password each
run); Ctrl-C stops every part cleanly. Every APDU the meter and the relays send
or receive is recorded in ``OUT/meter.pcap``, ``OUT/relay.pcap`` and ``OUT/master-relay.pcap``
for Wireshark.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from c1222.cli.codec import decode
from c1222.cli.params import SPEED, AddressType, OutputDir, bind_problem
from c1222.codec import samples
from c1222.transport.endpoint import Address
from c1222.transport.pcap import PcapWriter

#: The demo's key (id 2) — for the demo only: anyone reading this file has it.
DEMO_KEY = "2:C1222DE40C1222DE40C1222DE40C1222"
ADDRESS = re.compile(r"listening on tcp\+udp (\S+):(\d+)")
WEB = re.compile(r"(?:page|console) at http (\S+):(\d+)")
#: The relays' AP titles in the demo (the meter keeps its default title, the display's meter).
MASTER_RELAY_TITLE = "2.16.124.113620.1.22.0.123.1"
RELAY_TITLE = "2.16.124.113620.1.22.0.123.2"
METER_TITLE = "2.16.124.113620.1.22.0.123.8437"


def write_sample_capture(path: Path) -> int:
    """Every sample exchange over one TCP connection on port 1153; returns the message count."""
    messages = samples.messages()
    with PcapWriter.open(path, start_time=1_700_000_000.0) as writer:
        conn = writer.tcp_connection(("192.0.2.10", 40000), ("192.0.2.20", 1153))
        for i, apdu in enumerate(messages):
            conn.send(apdu.encode(), from_client=i % 2 == 0)
        conn.close()
    return len(messages)


@click.command("samples")
@click.option("--out", type=OutputDir(), default=Path("out"),
              show_default=True, help="Folder for the capture.")
@click.pass_context
def samples_command(ctx: click.Context, out: Path) -> None:
    """Write a capture of every C12.22 service (request and response) and decode it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "c1222-samples.pcap"
    count = write_sample_capture(path)
    ctx.invoke(decode, inputs=(str(path),))
    click.echo(f"{count} messages written to {path}; open it in Wireshark, or run "
               f"`c1222 decode --json {path}`.")


class Part:
    """One child process of the demo, its output echoed with a prefix."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "c1222.cli", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self.last_error = ""  # the last line it wrote to stderr: why it stopped, usually
        self._readers = [threading.Thread(target=self._read, args=(stream, is_err), daemon=True)
                         for stream, is_err in ((self.proc.stdout, False),
                                                (self.proc.stderr, True))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, is_err: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.lines.append(line)
            if len(self.lines) > 2000:  # the demo may run for days; the start lines are read
                del self.lines[:1000]    # early, so the latest thousand are enough
            if is_err and line.strip():
                self.last_error = line.strip()
            if "stopped" not in line:
                click.echo(f"[{self.name}] {line}", err=True)

    def exit_message(self) -> str:
        """``meter exited with status 1: <its last stderr line>``."""
        for reader in self._readers:  # its last words may still be in the pipe
            reader.join(2)
        status = self.proc.returncode
        how = (f"was killed by signal {-status}" if status is not None and status < 0
               else f"exited with status {status}")
        return f"{self.name} {how}" + (f": {self.last_error}" if self.last_error else "")

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = pattern.search(line)
                if found:
                    return found
            if self.proc.poll() is not None:
                raise click.ClickException(self.exit_message())
            time.sleep(0.05)
        raise click.ClickException(f"{self.name} did not start in {timeout:g} s"
                                   + (f": {self.last_error}" if self.last_error else ""))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float = 20.0) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def console_account(db_url: str) -> tuple[str, str]:
    """The demo's console account: ``admin`` with a fresh password each run (the demo's
    database is the demo's own); the user name and the password, to print."""
    import datetime as dt

    from c1222.headend.auth import FIRST_ADMIN, hash_password, new_password
    from c1222.headend.storage import UserRecord, open_storage

    password = new_password()
    digest = hash_password(password)
    with open_storage(db_url) as storage:
        if not storage.add_user(UserRecord(FIRST_ADMIN, "admin", digest,
                                           dt.datetime.now(dt.timezone.utc))):
            storage.update_user(FIRST_ADMIN, role="admin", password_hash=digest)
    return FIRST_ADMIN, password


def _free(address: Address, avoid: str = "") -> tuple[str, bool]:
    """``HOST:PORT`` to ask for, and whether it was replaced: when the port is taken (or is
    ``avoid``, given to the other part), the next free one of the ten above it, else any."""
    host, port = address
    for other in range(port, min(port + 11, 65536)) if port else ():
        if f"{host}:{other}" != avoid and bind_problem((host, other), udp=False) is None:
            return f"{host}:{other}", other != port
    return f"{host}:0", port != 0


def _web_address(address: Address) -> AddressType:
    # a taken port is not an error here: the demo picks another and says so
    return AddressType(address[1], listen=True, udp=False, check_free=False)


@click.command()
@click.option("--out", type=OutputDir(), default=Path("out/demo"),
              show_default=True, help="Folder for the database, state and capture.")
@click.option("--speed", type=SPEED, default=60.0, show_default=True,
              help="simulated seconds per real second (60: an hour a minute)")
@click.option("--display-http", type=_web_address(("127.0.0.1", 8080)), default="127.0.0.1:8080",
              show_default=True, help="the display's page (another port if taken)")
@click.option("--console-http", type=_web_address(("127.0.0.1", 8000)), default="127.0.0.1:8000",
              show_default=True, help="the head-end's console (another port if taken)")
def demo(out: Path, speed: float, display_http: Address, console_http: Address) -> None:
    """Run head-end, master relay, relay, meter and in-home display on loopback until Ctrl-C.

    Every option is checked before a part starts. When a part stops, the demo stops the others
    and names it with its last error line; a taken web port is replaced and the demo says so.
    """
    out.mkdir(parents=True, exist_ok=True)
    key = ["--key", DEMO_KEY, "--security-mode", "2"]
    parts: list[Part] = []
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    console_at, console_moved = _free(console_http)
    display_at, display_moved = _free(display_http, avoid=console_at)
    try:
        # Master relay first, then the head-end (its notification host, told of every node
        # registered after it), then the relay and the meter behind it.
        master = Part("master-relay", ["relay", "--master", "--ap-title", MASTER_RELAY_TITLE,
                                       "--listen", "127.0.0.1:0", "--reg-delay", "2",
                                       "--pcap", str(out / "master-relay.pcap"), *key])
        parts.append(master)
        m = master.wait_for(ADDRESS)
        master_at = f"{m.group(1)}:{m.group(2)}"
        db_url = f"sqlite:///{(out / 'headend.db').resolve()}"
        login = console_account(db_url)
        headend = Part("headend", ["headend", "--listen", "127.0.0.1:0", "--db", db_url,
                                   "--http", console_at, "--collect-interval", "5",
                                   "--log-interval", "60", "--master-relay", master_at, *key])
        parts.append(headend)
        display = Part("display", ["ihd", "--listen", "127.0.0.1:0",
                                   "--http", display_at,
                                   "--state-dir", str(out / "display"), *key])
        parts.append(display)
        headend.wait_for(ADDRESS)
        relay = Part("relay", ["relay", "--upstream", master_at, "--ap-title", RELAY_TITLE,
                               "--listen", "127.0.0.1:0", "--pcap", str(out / "relay.pcap"),
                               *key])
        parts.append(relay)
        r = relay.wait_for(ADDRESS)
        relay_at = f"{r.group(1)}:{r.group(2)}"
        d = display.wait_for(ADDRESS)
        # The meter keeps its own title (the display's meter), registered through the relay.
        # Told the master relay's title, its first Register is addressed to it: a secured
        # message without a called title cannot be verified by Wireshark (c1222.md 5.2).
        meter = Part("meter", ["meter", "--listen", "127.0.0.1:0", "--ap-title", METER_TITLE,
                               "--relay", relay_at, "--master-ap-title", MASTER_RELAY_TITLE,
                               "--ihd", f"{d.group(1)}:{d.group(2)}",
                               "--state-dir", str(out / "meter"), "--speed", repr(speed),
                               "--pcap", str(out / "meter.pcap"), *key])
        parts.append(meter)
        meter.wait_for(ADDRESS)
        console = headend.wait_for(WEB)
        page = display.wait_for(WEB)
        click.echo("")
        for moved, wanted, what, found in ((display_moved, display_http, "display", page),
                                           (console_moved, console_http, "console", console)):
            if moved:
                click.echo(f"port {wanted[1]} is taken; the {what} is on {found.group(2)}")
        click.echo(f"In-home display:  http://{page.group(1)}:{page.group(2)}/")
        click.echo(f"Head-end console: http://{console.group(1)}:{console.group(2)}/  "
                   f"(sign in as {login[0]}, password {login[1]})")
        click.echo(f"Network:          head-end -> master relay {master_at} -> relay {relay_at} "
                   "-> meter (the console's Network panel)")
        click.echo(f"Meter traffic:    {out / 'meter.pcap'} (key {DEMO_KEY})")
        click.echo(f"Relay traffic:    {out / 'relay.pcap'}, {out / 'master-relay.pcap'}")
        click.echo(f"Simulated time runs {speed:g}x; press Ctrl-C to stop.")
        while not interrupted.is_set():
            for part in parts:
                if part.proc.poll() is not None:
                    raise click.ClickException(part.exit_message() + "; the demo stopped")
            interrupted.wait(0.2)
    finally:
        for part in reversed(parts):  # the meter first: it logs its power-down
            part.stop()
        for part in reversed(parts):
            part.wait()
        signal.signal(signal.SIGINT, previous)
        if parts:
            click.echo("demo stopped")
