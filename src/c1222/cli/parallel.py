"""`c1222 decode` on every core: a large capture split by connection over worker processes.

The main process reads the capture (pcap parsing and TCP reassembly stay in one place, in
order) and deals its messages out in chunks: every message of one conversation goes to the
same worker, whose :class:`~c1222.session.dissect.Dissector` pairs responses with requests as
the serial path does. Workers return the output lines; the main process writes them in
capture order. At most a few chunks are in flight, so memory stays bounded whatever the
capture's size. Messages the capture reader already refused are formatted by the main process.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from c1222.workers import exit_with_parent

#: Messages per chunk, and chunks in flight (read ahead while the workers decode).
CHUNK = 4096
IN_FLIGHT = 3
#: How long to wait for a worker's answer before checking that every worker still runs.
POLL_SECONDS = 1.0

#: (index in the chunk, frame, bytes, time, src, dst, transport): one message for a worker.
Item = tuple[int, int, bytes, "float | None", "str | None", "str | None", "str | None"]


@dataclass(frozen=True)
class Settings:
    """What every worker needs to format a message as the serial path would."""

    as_json: bool
    arrow: str
    filters: tuple[tuple[Any, ...], ...]  # services, titles, codes, modes (make_filter)
    key_specs: tuple[str, ...]
    keys_file: str | None


class WorkerFailed(RuntimeError):
    """A worker process died (killed, out of memory): the output would have a hole."""


class _Message:
    """What :func:`c1222.cli.codec.record` and ``one_line`` read of a Source, built cheaper
    (a frozen dataclass's ``__init__`` cost a worker about 1 µs per message)."""

    __slots__ = ("frame", "data", "time", "src", "dst", "transport", "error")

    def __init__(self, frame: int, data: bytes, time: float | None, src: str | None,
                 dst: str | None, transport: str | None) -> None:
        self.frame, self.data, self.time = frame, data, time
        self.src, self.dst, self.transport, self.error = src, dst, transport, None


def _worker(number: int, inbox: Any, outbox: Any, settings: Settings) -> None:
    from c1222.cli.codec import json_lines, load_keys, make_filter, one_line, record
    from c1222.crypto.policy import make_unprotect
    from c1222.session.dissect import Dissector

    exit_with_parent()
    keys = load_keys(settings.key_specs, settings.keys_file)
    dissector = Dissector(unprotect=None if keys is None else make_unprotect(keys))
    dissect = dissector.dissect
    wanted = make_filter(*settings.filters)
    as_json, arrow = settings.as_json, settings.arrow
    while True:
        message = inbox.get()
        if message is None:
            return
        chunk, t0, items = message
        shown: list[int] = []  # index in the chunk of each line, in order
        lines: list[Any] = []
        failures = 0
        for index, frame, data, time, src, dst, transport in items:
            source: Any = _Message(frame, data, time, src, dst, transport)
            result = dissect(data, src, dst)
            if result.error is not None:
                failures += 1
            if wanted is not None and (result.apdu is None or not wanted(result.apdu)):
                continue
            shown.append(index)
            lines.append(record(source, result) if as_json
                         else one_line(source, result, t0, arrow))
        # JSON: the chunk's records encoded in one call, one line each (JSON text holds no
        # raw newline, so the main process splits it back); text lines go as they are.
        payload: bytes | list[str] = json_lines(lines) if as_json else lines
        outbox.put((chunk, number, shown, payload, failures))


def _chunks(sources: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for source in sources:
        chunk.append(source)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def decode(sources: Iterable[Any], workers: int, settings: Settings, out: IO[str]
           ) -> tuple[int, int]:
    """Decode ``sources`` (:class:`c1222.cli.codec.Source`) with ``workers`` processes and
    write one line per shown message to ``out`` in input order; return (seen, failures).

    An error from ``sources`` itself (a capture cut short) is raised after every message
    read before it has been written, as the serial path does.
    """
    from c1222.cli.codec import _dumps, one_line, record

    # Any: typeshed's BaseContext has no Process (the concrete contexts have)
    context: Any = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    inboxes = [context.Queue() for _ in range(workers)]
    outbox = context.Queue()
    procs = [context.Process(target=_worker, args=(i, inboxes[i], outbox, settings),
                             daemon=True, name=f"c1222-decode-{i}")
             for i in range(workers)]
    for proc in procs:
        proc.start()
    #: chunk -> worker -> (indices shown, JSON lines as one bytes or text lines, failures)
    arrived: dict[int, dict[int, tuple[list[int], bytes | list[str], int]]] = {}
    flight: list[tuple[int, list[Any], set[int]]] = []
    seen = failures = 0
    t0: float | None = None
    owner: dict[Any, int] = {}  # conversation -> worker (bounded by the reader's streams)
    raw = getattr(out, "buffer", None) if settings.as_json else None

    def collect() -> None:
        nonlocal failures
        chunk, lines, busy = flight.pop(0)
        while not busy.issubset(arrived.get(chunk, {})):
            try:
                got, number, shown, payload, failed = outbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not all(p.is_alive() for p in procs):
                    raise WorkerFailed("a decoding worker process died") from None
                continue
            arrived.setdefault(got, {})[number] = (shown, payload, failed)
        for shown, payload, failed in arrived.pop(chunk).values():
            failures += failed
            # zip stops at the last index: the JSON blob's final newline adds one empty part
            parts = payload.split(b"\n") if isinstance(payload, bytes) else payload
            for index, line in zip(shown, parts):
                lines[index] = line
        kept = [line for line in lines if line is not None]
        if not kept:
            return
        if not settings.as_json:
            out.write("\n".join(kept) + "\n")
        elif raw is not None:  # straight to the bytes below, as the serial path writes
            out.flush()
            raw.write(b"\n".join(kept) + b"\n")
        else:
            out.write(b"\n".join(kept).decode() + "\n")

    error: list[Exception] = []

    def reading() -> Iterator[Any]:
        try:
            yield from sources
        except Exception as exc:  # the input broke: write what was read, then say so
            error.append(exc)

    try:
        for number, chunk in enumerate(_chunks(reading(), CHUNK)):
            lines: list[Any] = [None] * len(chunk)  # bytes (JSON) or str per message
            parts: list[list[Item]] = [[] for _ in range(workers)]
            for index, source in enumerate(chunk):
                seen += 1
                if t0 is None:
                    t0 = source.time
                if source.error is not None:  # refused by the capture reader
                    failures += 1
                    if settings.filters and any(settings.filters):
                        continue  # filters choose among decoded messages only
                    lines[index] = (_dumps(record(source, None)).encode() if settings.as_json
                                    else one_line(source, None, t0, settings.arrow))
                    continue
                conversation = frozenset((source.src, source.dst))
                worker = owner.get(conversation)
                if worker is None:
                    worker = owner[conversation] = len(owner) % workers
                    if len(owner) > 100_000:
                        owner.clear()  # a new owner only misses pairs across the cut
                parts[worker].append((index, source.frame, source.data, source.time,
                                      source.src, source.dst, source.transport))
            busy = {i for i, part in enumerate(parts) if part}
            for i in busy:
                inboxes[i].put((number, t0, parts[i]))
            flight.append((number, lines, busy))
            while len(flight) >= IN_FLIGHT:
                collect()
        while flight:
            collect()
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    if error:
        raise error[0]
    return seen, failures
