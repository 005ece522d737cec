"""The demo's web ports: a taken one is replaced by the next free port above it, and the two
parts never get the same one."""

from __future__ import annotations

import socket

from c1222.cli.demo import _free


def test_a_free_port_is_kept_and_a_taken_one_moves_up() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        at, moved = _free(("127.0.0.1", port))
        assert moved and at != f"127.0.0.1:{port}"
        other = int(at.rpartition(":")[2])
        assert port < other <= port + 10 or other == 0
    assert _free(("127.0.0.1", port)) == (f"127.0.0.1:{port}", False)


def test_the_display_does_not_get_the_console_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    console, _ = _free(("127.0.0.1", port))
    display, moved = _free(("127.0.0.1", port), avoid=console)
    assert moved and display != console


def test_port_0_stays_any() -> None:
    assert _free(("127.0.0.1", 0)) == ("127.0.0.1:0", False)
