"""What a meter keeps across a restart or a kill -9: energy registers, load profile, event log,
and (in a sibling journal, :class:`ReplayJournal`) the secured requests it has served.

One JSON file, replaced atomically (write a temporary file, fsync it, rename it over the old
one, fsync the directory), so a crash at any instant leaves either the previous state or the
new one, never a torn mix. The tables are kept as their bytes (hex), exactly as served.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import mmap
import os
from pathlib import Path
from typing import Any

from c1222.crypto.replay import MessageId, ReplayWindow
from c1222.errors import C1222Error, ConfigurationError

STATE_FILE = "meter-state.json"
VERSION = 1
#: The tables whose contents outlive the process (status, registers, load profile, history,
#: and MT2, the customer notice the head-end wrote).
PERSISTED_TABLES = (3, 23, 63, 64, 74, 2050)


def save(state_dir: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically with ``state`` (plus its version)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"version": VERSION, **state}, separators=(",", ":")).encode()
    _replace(state_dir / STATE_FILE, data)


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old file or the new one, whole."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(state_dir: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none. A file that does not parse is a
    ConfigurationError naming it (the operator decides; it is never silently discarded)."""
    path = state_dir / STATE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc.strerror}") from None
    try:
        state = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{path}: not a meter state file ({exc})") from None
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise ConfigurationError(f"{path}: unknown state version")
    return state


# ------------------------------------------------------------------ replay journal

REPLAY_JOURNAL = "replay-journal"
#: A journal larger than this is not read (it is compacted long before it gets there).
MAX_JOURNAL_BYTES = 64 * 1024 * 1024
#: Appended lines before the journal is rewritten with only what the window still holds
#: (at least; see :meth:`ReplayJournal.compaction_due`).
COMPACT_AFTER = 4096
#: ... and at least this many times the entries a rewrite would keep, so the lines a rewrite
#: writes stay below half a line per served request however full the window is.
COMPACT_RATIO = 2
#: Seconds at most between an append and its ``fdatasync`` (the meter's sync task).
SYNC_INTERVAL = 0.05
#: Bytes of the journal reserved on the disk at a time (about 3,500 lines).
RESERVE = 256 * 1024


class ReplayJournal:
    """The durable memory of a meter's replay window (issue 15 finding 2).

    Every secured request the window accepts is appended as one line **before** it is
    served, so a kill -9 right after serving cannot forget it: the line is written into a
    shared memory map of the file (the kernel's page cache: it outlives the process, and
    costs no system call per request; one ``write`` per request was a fifth of a mode-2
    request's CPU). The meter flushes the file to the disk (``fdatasync``) at most
    :data:`SYNC_INTERVAL` later (:meth:`sync`), so a power cut can forget the requests of
    that last moment only. (One ``fdatasync`` per request, on the event loop, halved the
    meter's mode-2 serving rate.) The map's space is reserved on the disk
    (``posix_fallocate``) :data:`RESERVE` bytes at a time, so a full disk refuses an append
    with ENOSPC (the request is refused) instead of killing the meter with SIGBUS when a page
    of a sparse file cannot be stored; what was reserved and not written is zeros, cut off
    again at a clean :meth:`close`. A restart reads the journal back into the window. The
    file is rewritten atomically (temporary file, fsync, rename, fsync of the directory) with
    only the live entries at start, and once the lines appended since the last rewrite
    number both :data:`COMPACT_AFTER` and :data:`COMPACT_RATIO` times the live entries (so
    the file holds at most about ``1 + COMPACT_RATIO`` times the window, a few MiB for a
    full one).

    Lines: ``F <floor> <latest now>`` (the window's time-mode floor; ``-`` for none) first,
    then ``A <now> <key id> <iv hex> <A8> <calling AP title or ->`` per message, then, in a
    journal the meter did not close, zeros up to the reserved size. A last line without its
    newline is a write torn by a crash (the newline is stored last) — its request was never
    served — and is dropped; any other line that does not parse, or a line after the zeros,
    is a ConfigurationError naming the file.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / REPLAY_JOURNAL
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._end = 0  # where the next line goes: the end of the lines in the file
        self.appended = 0
        self.unsynced = False  # appended since the last fdatasync

    def load(self) -> tuple[int | None, float | None, list[tuple[MessageId, float]]]:
        """(floor, latest now, entries) as :meth:`ReplayWindow.restore` takes them."""
        try:
            size = self.path.stat().st_size
            if size > MAX_JOURNAL_BYTES:
                raise ConfigurationError(f"{self.path}: {size} bytes, more than a replay "
                                         f"journal ever holds ({MAX_JOURNAL_BYTES})")
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None, None, []
        except OSError as exc:
            raise ConfigurationError(f"{self.path}: {exc.strerror}") from None
        hole = raw.find(0)
        if hole >= 0:  # the reserved tail: zeros, or a torn last write in them
            if b"\n" in raw[hole:]:
                raise ConfigurationError(f"{self.path}: a line after the zeros at byte "
                                         f"{hole}: not a replay journal")
            raw = raw[:hole]
        lines = raw.split(b"\n")
        lines.pop()  # after the last newline: empty, or a torn last write
        floor: int | None = None
        now_high: float | None = None
        entries: list[tuple[MessageId, float]] = []
        for number, line in enumerate(lines, 1):
            try:
                fields = line.decode("ascii").split(" ")
                if fields[0] == "F" and len(fields) == 3:
                    floor = None if fields[1] == "-" else int(fields[1])
                    now_high = None if fields[2] == "-" else float(fields[2])
                elif fields[0] == "A" and len(fields) == 6:
                    title = "" if fields[5] == "-" else fields[5]
                    message = MessageId(title, int(fields[2]), bytes.fromhex(fields[3]),
                                        int(fields[4]))
                    entries.append((message, float(fields[1])))
                else:
                    raise ValueError("unknown record")
            except (ValueError, UnicodeDecodeError, C1222Error) as exc:
                raise ConfigurationError(f"{self.path}:{number}: not a replay journal line "
                                         f"({exc})") from None
        return floor, now_high, entries

    def _line(self, message: MessageId, when: float) -> bytes:
        """``A <now> <key id> <iv hex> <A8> <title or ->`` and its newline, as bytes (built
        with bytes formatting: one per served request)."""
        title = message.calling_ap_title.encode("ascii") if message.calling_ap_title else b"-"
        return b"A %.3f %d %b %d %b\n" % (when, message.key_id, binascii.hexlify(message.iv),
                                           message.invocation_id, title)

    def append(self, message: MessageId, now: float) -> None:
        """Write one accepted message (it survives the process; :meth:`sync` puts it on the
        disk); OSError when the disk refuses."""
        line = self._line(message, now)
        journal = self._map
        if journal is None or self._end + len(line) > len(journal):
            journal = self._reserve(len(line))
        start = self._end
        end = start + len(line)
        # The newline last: a kill -9 between the two stores leaves a line without one,
        # which load drops (its request was not served).
        journal[start : end - 1] = line[:-1]
        journal[end - 1] = 10
        self._end = end
        self.unsynced = True
        self.appended += 1

    def _reserve(self, need: int) -> mmap.mmap:
        """Open and map the journal, with room for ``need`` more bytes (and :data:`RESERVE`)
        reserved on the disk."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            size = os.fstat(self._fd).st_size
            if size:  # after the last whole line (before the zeros a crash left, if any)
                with mmap.mmap(self._fd, size, access=mmap.ACCESS_READ) as existing:
                    hole = existing.find(b"\0")
                    self._end = existing.rfind(b"\n", 0, size if hole < 0 else hole) + 1
        size = self._end + need + RESERVE
        os.posix_fallocate(self._fd, 0, size)  # ENOSPC here, not SIGBUS in a store later
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, size)
        return self._map

    def compaction_due(self, window: ReplayWindow) -> bool:
        """True when :meth:`rewrite` is worth its cost: appended lines are at least
        :data:`COMPACT_AFTER` and :data:`COMPACT_RATIO` times what ``window`` keeps."""
        return self.appended >= COMPACT_AFTER and self.appended >= COMPACT_RATIO * len(window)

    def sync(self) -> None:
        """Flush what was appended to the disk (``fdatasync``); OSError when it cannot."""
        if self.unsynced and self._fd is not None:
            os.fdatasync(self._fd)
        self.unsynced = False

    def rewrite(self, window: ReplayWindow) -> None:
        """Replace the journal atomically with what ``window`` still remembers."""
        floor, now_high, entries = window.snapshot()
        out = [f"F {'-' if floor is None else floor} "
               f"{'-' if now_high is None else f'{now_high:.3f}'}\n".encode("ascii")]
        line = self._line
        out.extend([line(message, when) for message, when in entries])
        _replace(self.path, b"".join(out))
        self.close()  # the next append opens the new file
        self.appended = 0

    def close(self) -> None:
        """Flush, and cut the reserved zeros off: a cleanly closed journal holds its lines."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            with contextlib.suppress(OSError):  # closing: what can be kept is kept
                os.ftruncate(self._fd, self._end)
                self.sync()
            os.close(self._fd)
            self._fd = None
        self._end = 0
