"""The meter's replay journal: what the replay window accepted, durable and compact."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from c1222.crypto.replay import MessageId, ReplayWindow
from c1222.errors import ConfigurationError, SecurityError
from c1222.meter import state

T0 = 1_700_000_000
TITLE = "2.16.124.113620.1.22.0.123.4"


def msg(t: int, a8: int, title: str = TITLE) -> MessageId:
    return MessageId(title, 2, t.to_bytes(4, "big"), a8)


def run(tmp_path: Path, *accepted: tuple[MessageId, float]) -> state.ReplayJournal:
    journal = state.ReplayJournal(tmp_path)
    window = ReplayWindow(iv_tolerance=900.0, record=journal.append)
    for message, now in accepted:
        window.accept(message, now)
    return journal


def restored(tmp_path: Path) -> ReplayWindow:
    window = ReplayWindow(iv_tolerance=900.0)
    window.restore(*state.ReplayJournal(tmp_path).load())
    return window


def test_every_accepted_message_is_refused_after_a_restart(tmp_path: Path) -> None:
    journal = run(tmp_path, (msg(T0, 1), T0), (msg(T0, 2, ""), T0 + 1))
    journal.close()  # no rewrite: what a kill -9 leaves
    window = restored(tmp_path)
    for message in (msg(T0, 1), msg(T0, 2, "")):
        with pytest.raises(SecurityError):
            window.accept(message, T0 + 2)
    window.accept(msg(T0, 3), T0 + 2)


def test_a_torn_last_line_is_dropped_and_a_rewrite_repairs_the_file(tmp_path: Path) -> None:
    run(tmp_path, (msg(T0, 1), T0)).close()
    path = tmp_path / state.REPLAY_JOURNAL
    with open(path, "ab") as f:
        f.write(b"A 1700000001.000 2 6553f1")  # a crash in the middle of a write
    floor, now_high, entries = state.ReplayJournal(tmp_path).load()
    assert [m for m, _ in entries] == [msg(T0, 1)]
    window = ReplayWindow(iv_tolerance=900.0)
    window.restore(floor, now_high, entries)
    journal = state.ReplayJournal(tmp_path)
    journal.rewrite(window)
    journal.append(msg(T0, 5), T0 + 3)
    assert [m for m, _ in state.ReplayJournal(tmp_path).load()[2]] == [msg(T0, 1), msg(T0, 5)]


@pytest.mark.parametrize("line", [b"A x 2 00 1 -\n", b"Z 1\n", b"A 1.0 2 zz 1 -\n",
                                  b"A 1.0 999 00000001 1 -\n", b"\xff\xfe\n"])
def test_a_damaged_line_is_a_configuration_error_naming_the_file(tmp_path: Path,
                                                                 line: bytes) -> None:
    (tmp_path / state.REPLAY_JOURNAL).write_bytes(b"F - -\n" + line)
    with pytest.raises(ConfigurationError, match=r"replay-journal:2"):
        state.ReplayJournal(tmp_path).load()


def test_an_oversized_journal_is_not_read(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(state, "MAX_JOURNAL_BYTES", 10)
    (tmp_path / state.REPLAY_JOURNAL).write_bytes(b"F - -\n" * 5)
    with pytest.raises(ConfigurationError, match="more than"):
        state.ReplayJournal(tmp_path).load()


def test_a_rewrite_keeps_only_the_live_entries_and_the_floor(tmp_path: Path) -> None:
    journal = state.ReplayJournal(tmp_path)
    window = ReplayWindow(iv_tolerance=900.0, record=journal.append)
    for i in range(50):
        window.accept(msg(T0 + i * 100, i + 1), T0 + i * 100)
    journal.rewrite(window)
    lines = (tmp_path / state.REPLAY_JOURNAL).read_bytes().splitlines()
    assert len(lines) == 1 + len(window) < 20
    again = restored(tmp_path)
    assert again.floor == window.floor
    with pytest.raises(SecurityError):  # forgotten, but below the restored floor
        again.accept(msg(T0, 1), T0 + 4900)


def test_lines_keep_the_format_older_runs_wrote(tmp_path: Path) -> None:
    """A journal written before the lines were built as bytes loads, and new lines are the
    same text."""
    old = (b"F 1699999100 1700000000.250\n"
           b"A 1700000000.250 2 6553f100 7 2.16.124.113620.1.22.0.123.4\n"
           b"A 1700000000.500 2 6553f100 8 -\n")
    path = tmp_path / state.REPLAY_JOURNAL
    path.write_bytes(old)
    floor, now_high, entries = state.ReplayJournal(tmp_path).load()
    assert (floor, now_high) == (1699999100, 1700000000.25)
    assert entries == [(msg(T0, 7), 1700000000.25), (msg(T0, 8, ""), 1700000000.5)]
    path.write_bytes(old[: old.index(b"\n") + 1])
    journal = state.ReplayJournal(tmp_path)
    for message, when in entries:
        journal.append(message, when)
    journal.close()
    assert path.read_bytes() == old


def test_compaction_waits_for_enough_lines_to_pay_for_the_rewrite(tmp_path: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(state, "COMPACT_AFTER", 10)
    journal = state.ReplayJournal(tmp_path)
    window = ReplayWindow(max_age=60.0, record=journal.append)  # window mode
    for n in range(1, 10):
        window.accept(msg(T0, n), T0)
    assert not journal.compaction_due(window)  # fewer than COMPACT_AFTER lines
    for n in range(10, 20):
        window.accept(msg(T0, n), T0)
    # 19 lines for 19 live entries: a rewrite would write as much as it saves
    assert not journal.compaction_due(window)
    window.accept(msg(T0, 20), T0 + 100)  # the first 19 expire: one entry is live
    assert journal.compaction_due(window)
    journal.rewrite(window)
    assert journal.appended == 0 and not journal.compaction_due(window)
    journal.close()


def test_no_journal_is_an_empty_window(tmp_path: Path) -> None:
    assert state.ReplayJournal(tmp_path).load() == (None, None, [])


@pytest.mark.parametrize("key, value", [("replay_protection", "none"), ("iv_tolerance", 0),
                                        ("iv_tolerance", "x"), ("max_per_address", 0),
                                        ("max_per_address", True)])
def test_profile_keys_of_replay_protection_and_slots_are_checked(key, value) -> None:
    from c1222.meter.config import from_mapping

    with pytest.raises(ConfigurationError, match=key):
        from_mapping({key: value})


def test_profile_defaults_are_the_strong_ones() -> None:
    from c1222.meter.config import from_mapping

    config = from_mapping({})
    assert (config.replay_protection, config.iv_tolerance, config.max_per_address) == \
        ("time", 900.0, 64)
    assert from_mapping({"replay_protection": "window"}).replay_protection == "window"


def test_appends_reach_the_file_at_once_and_the_disk_in_one_batched_flush(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each accepted request is written before it is served (a kill -9 keeps it: the kernel
    has it); the fdatasync is batched by :meth:`ReplayJournal.sync`, one for many appends."""
    flushed: list[int] = []
    monkeypatch.setattr(state.os, "fdatasync", flushed.append)
    journal = run(tmp_path, *((msg(T0, n), T0) for n in range(1, 6)))
    assert flushed == [] and journal.unsynced
    window = restored(tmp_path)  # read back without any flush: what a kill -9 leaves
    with pytest.raises(SecurityError):
        window.accept(msg(T0, 3), T0 + 1)
    journal.sync()
    journal.sync()  # nothing new: no second flush
    assert len(flushed) == 1 and not journal.unsynced
    journal.close()


def test_a_journal_left_by_a_kill_holds_zeros_after_its_lines_and_loads(tmp_path: Path) -> None:
    """Appends go into a memory map with space reserved ahead: the file a kill -9 leaves has
    zeros after its lines (and maybe a torn line in them); it loads, and a reopened journal
    goes on after its last whole line. A clean close cuts the zeros off."""
    journal = run(tmp_path, (msg(T0, 1), T0), (msg(T0, 2), T0))
    path = tmp_path / state.REPLAY_JOURNAL
    raw = path.read_bytes()  # no close: what a kill -9 leaves
    lines = raw.rstrip(b"\0")
    assert len(raw) >= state.RESERVE and lines.count(b"\n") == 2 and lines.endswith(b"\n")
    torn = lines + b"A 1700000001.000 2 65"  # a crash in the middle of the next line
    path.write_bytes(torn + b"\0" * 100)
    journal._map = None  # forget the map and the file without touching it (kill -9)
    journal._fd = None
    assert [m for m, _ in state.ReplayJournal(tmp_path).load()[2]] == [msg(T0, 1), msg(T0, 2)]
    reopened = state.ReplayJournal(tmp_path)
    reopened.append(msg(T0, 3), T0)  # over the torn line
    reopened.close()
    assert [m for m, _ in state.ReplayJournal(tmp_path).load()[2]] == \
        [msg(T0, 1), msg(T0, 2), msg(T0, 3)]
    assert b"\0" not in path.read_bytes() and path.read_bytes().endswith(b"\n")


def test_a_journal_grows_past_its_reservation(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(state, "RESERVE", 100)  # a line or two per reservation
    journal = run(tmp_path, *((msg(T0, n), T0) for n in range(1, 40)))
    journal.close()
    assert [m.invocation_id for m, _ in state.ReplayJournal(tmp_path).load()[2]] == \
        list(range(1, 40))


def test_a_line_after_the_zeros_is_not_a_journal(tmp_path: Path) -> None:
    (tmp_path / state.REPLAY_JOURNAL).write_bytes(b"F - -\n\0\0A 1.0 2 00000001 1 -\n")
    with pytest.raises(ConfigurationError, match="after the zeros"):
        state.ReplayJournal(tmp_path).load()


def test_a_full_disk_refuses_the_append_and_keeps_the_journal(tmp_path: Path,
                                                             monkeypatch) -> None:
    """The space is reserved before a line is stored: a full disk is an OSError for the
    caller (the meter refuses the request), never a SIGBUS in a store to the map."""
    monkeypatch.setattr(state, "RESERVE", 100)
    journal = run(tmp_path, (msg(T0, 1), T0))

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state.os, "posix_fallocate", full)
    with pytest.raises(OSError):
        for n in range(2, 10):  # past the reservation
            journal.append(msg(T0, n), T0)
    monkeypatch.undo()
    journal.close()
    kept = [m.invocation_id for m, _ in state.ReplayJournal(tmp_path).load()[2]]
    assert kept[0] == 1 and kept == list(range(1, len(kept) + 1))  # whole lines, in order


def test_a_meter_whose_journal_cannot_be_written_refuses_secured_requests_and_recovers(
        tmp_path: Path, monkeypatch) -> None:
    """Disk full: the request is answered SME (it was not recorded, so it is not served), the
    meter keeps serving, and once the disk has room again the same kind of request is OK."""
    from dataclasses import dataclass

    from c1222.codec.ber import Uid
    from c1222.codec.services import FullReadRequest
    from c1222.codes import ResponseCode
    from c1222.crypto.keys import KeyTable
    from c1222.crypto.nonces import TimeIvSource
    from c1222.meter.config import MeterConfig
    from c1222.meter.node import Meter
    from c1222.session.requester import Requester
    from c1222.transport.client import responses

    @dataclass
    class Link:
        id: int

    keys = KeyTable.from_cli(["2:" + "00112233445566778899aabbccddeeff"])
    monkeypatch.setattr(state, "RESERVE", 100)
    meter = Meter(MeterConfig(state_dir=tmp_path, security_mode=2, keys=keys))
    requester = Requester(Uid.parse(TITLE), TimeIvSource(meter.wall), keys=keys,
                          security_mode=2, key_id=2)

    def ask() -> list[int]:
        pending = requester.request([FullReadRequest(1)], meter.ap_title)
        data, _ = meter._on_request(pending.data, Link(1))  # the endpoint's call
        assert data is not None
        return [r.response_code for r in responses(requester.accept(data, pending,
                                                                    meter.wall()))]

    assert ask() == [ResponseCode.OK]
    real = state.os.posix_fallocate

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state.os, "posix_fallocate", full)
    codes = [ask() for _ in range(5)]
    assert [ResponseCode.SME] in codes  # refused once the reservation ran out
    monkeypatch.setattr(state.os, "posix_fallocate", real)
    assert ask() == [ResponseCode.OK]
    served = len(state.ReplayJournal(tmp_path).load()[2])
    assert served == 2 + codes.count([ResponseCode.OK])  # every served request, journaled
