"""A tiny deterministic splitter of fuzz input into typed pieces.

The structured targets (chunk sizes, request palettes, table records) cut their input with
this instead of atheris' FuzzedDataProvider: a stored crasher then means the same thing
whatever atheris version replays it, and the replay tests do not need atheris at all.
Running out of bytes gives zeros / empty strings, never an error.
"""

from __future__ import annotations


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + max(0, n)]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def pick(self, items):  # noqa: ANN001, ANN201 - any sequence
        return items[self.byte() % len(items)]
