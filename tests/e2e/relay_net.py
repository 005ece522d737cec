"""A C12.22 relay network made of `c1222` commands on 127.0.0.1, as a user starts it: the master
relay, one relay below it and a meter that registers through the relay with the empty title
(the master relay assigns one). Every node holds the network key and accepts modes 0 to 2."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.procs import Running

KEY_HEX = "000102030405060708090A0B0C0D0E0F"
SECURITY = ["--security-mode", "0", "--key", f"2:{KEY_HEX}"]
MASTER = "2.16.124.113620.1.22.0.123.50"
RELAY = "2.16.124.113620.1.22.0.123.60"


class RelayNet:
    """``with RelayNet(tmp) as net``: net.master_address, net.relay_address, net.meter."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.parts: list[Running] = []

    def __enter__(self) -> RelayNet:
        try:
            # reg-delay 1 s: a meter whose link dropped (a Disconnect through the relay)
            # registers again at once, not after up to a minute.
            self.master = self._start(["relay", "--master", "--ap-title", MASTER,
                                       "--listen", "127.0.0.1:0", "--reg-delay", "1",
                                       *SECURITY])
            self.master_address = self.master.address()
            self.relay = self._start(["relay", "--ap-title", RELAY, "--listen", "127.0.0.1:0",
                                      "--upstream", _text(self.master_address), *SECURITY])
            self.relay_address = self.relay.address()
            self.meter = self._start(["meter", "--listen", "127.0.0.1:0",
                                      "--relay", _text(self.relay_address),
                                      "--state-dir", str(self.tmp / "meter"), *SECURITY])
            self.meter.address()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, args: list[str]) -> Running:
        part = Running(args)
        self.parts.append(part)
        return part

    def __exit__(self, *exc: object) -> None:
        for part in reversed(self.parts):
            try:
                part.stop()
            except AssertionError:
                part.kill()


def _text(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"
