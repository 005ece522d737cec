"""The fuzz targets: one function per decoder family, and what each one promises.

Each target takes the fuzzer's bytes, drives a public decoder with them and returns
normally when the decoder gave a value or raised an exception of its documented family
(docs/fuzzing.md). Anything else escaping - an IndexError, an AssertionError from the
checks below, a RecursionError - is a crash: atheris reports it, and the replay test
(tests/fuzz/test_crashers.py) calls the same function on every stored vector.

Targets import nothing from atheris, so vectors replay without it; structured input is cut
with :class:`tests.fuzz.reader.Reader`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass

from c1222.codec import acse, text
from c1222.codec import services as sv
from c1222.codec.framing import StreamFramer, apdu_size, split_apdus
from c1222.codec.samples import exchanges, messages
from c1222.crypto import policy
from c1222.crypto.keys import KeyTable
from c1222.crypto.policy import make_unprotect, protect, unprotect
from c1222.crypto.replay import ReplayWindow
from c1222.errors import C1222Error, DecodeError, SecurityError
from c1222.tables import readings
from c1222.tables.engine import to_jsonable
from c1222.tables.registry import TABLES, decode_table, encode_table, make_env
from c1222.transport.pcap import read_capture
from tests.fuzz.reader import Reader

#: The keys every secured target uses: Example 8's key id 2 and a second one.
KEY_IDS = (2, 7)
KEYS = KeyTable({2: bytes.fromhex("01020304050607080102030405060708"),
                 7: bytes(range(16))})

# --------------------------------------------------------------------------- shared checks


def check_apdu(apdu: acse.Apdu, requests=None) -> None:  # noqa: ANN001
    """What every decoded message must allow: its canonical JSON form and back (architecture
    rule 6), and encoding it again to bytes that decode to the same message."""
    value = text.to_json(apdu)
    again = text.from_json(json.loads(json.dumps(value)))
    assert again == apdu, f"from_json(to_json(m)) != m\n{again}\n{apdu}"
    if apdu.epsem.secured and apdu.epsem.ciphertext is None and apdu.epsem.security_mode == 2:
        return  # a decrypted mode-2 message: its bytes are the ciphertext, checked elsewhere
    data = acse.encode(apdu)
    redecoded = acse.decode(data, requests)
    assert redecoded == apdu, f"decode(encode(m)) != m\n{redecoded}\n{apdu}"


# --------------------------------------------------------------------------- ACSE / EPSEM


def target_apdu(data: bytes) -> None:
    """acse.decode without requests, and the two cheap header walks."""
    try:
        apdu = acse.decode(data)
    except DecodeError:
        pass
    else:
        assert isinstance(apdu, acse.Apdu)
        check_apdu(apdu)
    for walk in (acse.called_invocation_id, acse.called_ap_title, acse.segment_header):
        try:
            walk(data)
        except DecodeError:
            pass


def _request_palette() -> list[sv.Request]:
    palette: list[sv.Request] = []
    for requests, _ in exchanges():
        palette += [r for r in requests if r not in palette]
    palette += [sv.UnknownRequest(0x7F, b"\x01"), sv.PartialReadIndexRequest(1, (1,) * 9, 2),
                sv.IdentifyRequest(), sv.LogonRequest(1, b"X" * 10, 0)]
    return palette


REQUESTS = _request_palette()


def target_apdu_typed(data: bytes) -> None:
    """acse.decode typed by up to 3 requests, as a list or through the lookup function."""
    r = Reader(data)
    head = r.byte()
    requests = [r.pick(REQUESTS) for _ in range(head & 3)]
    message = r.rest()
    given: object = requests
    if head & 4:
        def lookup(called: int | None, calling: int) -> list[sv.Request] | None:
            assert isinstance(calling, int) and (called is None or isinstance(called, int))
            return requests if head & 8 else None
        given = lookup
    try:
        apdu = acse.decode(message, given)  # type: ignore[arg-type]
    except DecodeError:
        return
    check_apdu(apdu, requests if not head & 4 or head & 8 else None)


# --------------------------------------------------------------------------- security


_REPLAY = ReplayWindow(max_entries=32, max_age=30.0)
_CLOCK = [0.0]


def sign(data: bytes, session_key: tuple[int, bytes] | None) -> bytes:
    """``data`` with a MAC that verifies (and in mode 2 its body encrypted), so the fuzzer's
    bytes reach the code after the MAC check. Uses the codec's header decode and the policy's
    cleartext (the one place that builds N); bytes it cannot sign are returned as they are."""
    try:
        header = acse.decode_header(data)
        found = policy._key_id_iv(header)
        if found is None and not header.has(policy.TAG_CALLING_AUTHENTICATION_VALUE):
            found = session_key
        if found is None or found[0] not in KEYS:
            return data
        ctl = header.spans.epsem[0]
        if ctl >= len(data):
            return data
        mode = (data[ctl] >> 2) & 3
        if not data[ctl] & 0x80 or mode not in (1, 2) or len(data) - ctl - 1 < 4:
            return data
        cleartext = policy._cleartext_of(data, header, *found)
    except C1222Error:
        return data
    cipher = KEYS.cipher(found[0])
    body = data[ctl + 1 : len(data) - 4]
    if mode == 2:
        body, mac = cipher.encrypt(cleartext, body)
    else:
        mac = cipher.authenticate(cleartext, body)
    return data[: ctl + 1] + body + mac


def target_unprotect(data: bytes) -> None:
    """unprotect with keys, replay window, minimum mode, session key and typed requests;
    and the observer's make_unprotect step. SecurityError or DecodeError, nothing else."""
    r = Reader(data)
    flags = r.byte()
    step = r.byte()
    message = r.rest()
    session_key = (r.pick(KEY_IDS), bytes(4)) if flags & 4 else None
    if flags & 1:
        message = sign(message, session_key)
    _CLOCK[0] += step
    requests = REQUESTS[flags % len(REQUESTS): flags % len(REQUESTS) + 2] if flags & 32 else None
    given: object = requests
    if flags & 128:  # the lookup form, which unprotect remembers for the decrypted services
        given = lambda called, calling: requests  # noqa: E731
    try:
        apdu = unprotect(message, KEYS, replay=_REPLAY if flags & 2 else None, now=_CLOCK[0],
                         requests=given, minimum_mode=(flags >> 3) & 3,  # type: ignore[arg-type]
                         session_key=session_key, debug=lambda reason: None)
    except (DecodeError, SecurityError):
        pass
    else:
        assert apdu.epsem.ciphertext is None
        text.to_json(apdu)
    if flags & 64:
        try:
            original = acse.decode(message, requests)
        except DecodeError:
            return
        try:
            apdu, verified = make_unprotect(KEYS)(message, original, requests)
        except DecodeError:
            return
        assert verified in (True, False, None)
        text.to_json(apdu)


# --------------------------------------------------------------------------- framing


def target_framer(data: bytes) -> None:
    """StreamFramer fed in random chunks gives the same APDUs as one feed; errors are
    DecodeError, and the framer keeps refusing after one."""
    r = Reader(data)
    head = r.byte()
    max_size = 64 + r.u16() if head & 1 else 1 << 24
    cuts = [r.byte() for _ in range(head >> 4)]
    stream = r.rest()
    framer = StreamFramer(max_size)
    got: list[bytes] = []
    failed = None
    pos = 0
    for cut in cuts + [len(stream)]:
        piece, pos = stream[pos : pos + cut], pos + cut
        try:
            got += framer.feed(piece)
        except DecodeError as exc:
            failed = exc
            break
    if failed is not None:
        try:
            framer.feed(b"")
        except DecodeError:
            pass
        else:
            raise AssertionError("the framer accepted bytes after an error")
    joined = b"".join(got)
    assert stream.startswith(joined), "framed bytes are not the stream's prefix"
    for apdu in got:
        assert apdu_size(apdu, 0, max_size) == len(apdu)
    try:
        whole, tail = split_apdus(stream, max_size)
    except DecodeError:
        assert failed is not None or len(got) < len(stream), "one feed failed, chunks did not"
        return
    if failed is None:
        assert whole == got, "chunking changed the APDUs"
        assert joined + tail == stream[: len(joined) + len(tail)]


# --------------------------------------------------------------------------- tables

#: Table numbers a record of the table container may name (byte % len): every layout and
#: two without one.
TABLE_NUMBERS = sorted(TABLES) + [9, 2049]


def unpack_tables(data: bytes) -> dict[int, bytes]:
    """The table container: records of ``<table index:1> <length:2> <bytes>``."""
    r = Reader(data)
    tables: dict[int, bytes] = {}
    while r.remaining >= 3:
        number = r.pick(TABLE_NUMBERS)
        tables[number] = r.take(r.u16())
    return tables


def pack_tables(tables: dict[int, bytes]) -> bytes:
    out = bytearray()
    for number, raw in tables.items():
        out += bytes((TABLE_NUMBERS.index(number),)) + len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def target_tables(data: bytes) -> None:
    """Every table decoder, each under the fuzzed Table 0 and dimension tables before it
    (readings.decoded), then its JSON form and its encoding under the same context."""
    tables = unpack_tables(data)
    try:
        out = readings.decoded(tables)
    except DecodeError:
        return
    gen = out[0]
    for number, value in out.items():
        to_jsonable(value)
        env = None if number == 0 else make_env(gen, {k: v for k, v in out.items()
                                                      if k < number})
        encode_table(number, value, env)
        # The same bytes decode to the same value (one parse gives one answer).
        assert decode_table(number, tables[number], env) == value or _has_nan(value)


def _has_nan(value) -> bool:  # noqa: ANN001
    return "nan" in repr(value).lower()


def target_readings(data: bytes) -> None:
    """Every tables.readings reader on fuzzed tables (Table 0 and dimensions included)."""
    tables = unpack_tables(data)
    readers: list[Callable[[dict[int, bytes]], object]] = [
        readings.meter_values, readings.meter_time, readings.history_entries,
        *(lambda t, n=n: readings.lp_intervals(t, n) for n in (1, 2, 3, 4))]
    for reader in readers:
        try:
            reader(tables)
        except DecodeError:
            pass


_STORE_TABLES: dict[int, bytes] = {}
_STORE_PROFILE = None


def _fresh_store():  # noqa: ANN202 - a TableStore with its procedure engine attached
    """The meter's table store, every table writable, rebuilt from the same bytes for each
    input so a crash does not depend on what earlier inputs wrote."""
    global _STORE_PROFILE
    from c1222.tables.procedures import ProcedureEngine
    from c1222.tables.profile import DEFAULT_TABLE_SET, MeterProfile, default_store
    from c1222.tables.store import TableStore
    if _STORE_PROFILE is None:
        _STORE_PROFILE = MeterProfile(lp_nbr_blks=2, lp_nbr_blk_ints=6, nbr_history_entries=4,
                                      writable_tables=DEFAULT_TABLE_SET)
        built = default_store(_STORE_PROFILE)
        _STORE_TABLES.update({n: built.get_bytes(n) for n in built.numbers()})
    store = TableStore(_STORE_TABLES, policy=_STORE_PROFILE.policy())
    ProcedureEngine(store)
    return store


def target_store(data: bytes) -> None:
    """The meter's table services on fuzzed requests: up to 4 reads and writes (full, by
    offset, by index; Table 7 runs procedures) by an operator or nobody, at a fuzzed time.
    A ServiceError (the response code) or a result, nothing else."""
    from c1222.errors import ServiceError
    from c1222.tables.access import GROUP_ALL, Principal
    from c1222.tables.types import TimeDate
    store = _fresh_store()
    numbers = store.numbers()
    r = Reader(data)
    head = r.byte()
    principal = Principal(2, GROUP_ALL) if head & 1 else None
    now = TimeDate(2000 + r.byte() % 90, r.byte() % 14, r.byte() % 33, r.byte() % 25,
                   r.byte() % 61) if head & 2 else None
    for _ in range(1 + (head >> 2) % 4):
        op = r.byte() % 6
        number = r.pick(numbers) if r.byte() & 0x80 == 0 else r.u16()
        try:
            if op == 0:
                store.full_read(number, principal=principal, now=now)
            elif op == 1:
                store.partial_read_offset(number, r.u16(), r.u16(), principal=principal, now=now)
            elif op == 2:
                indices = [r.byte() for _ in range(1 + r.byte() % 3)]
                store.partial_read_index(number, indices, r.byte(), principal=principal, now=now)
            else:
                payload = r.take(r.u16() % 512)
                if op == 3:
                    store.full_write(number, payload, principal=principal, now=now)
                elif op == 4:
                    store.partial_write_offset(number, r.u16(), payload, principal=principal,
                                               now=now)
                else:
                    indices = [r.byte() for _ in range(1 + r.byte() % 3)]
                    store.partial_write_index(number, indices, payload, principal=principal,
                                              now=now)
        except ServiceError:
            pass


# --------------------------------------------------------------------------- captures


def target_pcap(data: bytes) -> None:
    """read_capture on a fuzzed pcap/pcapng file: records or a DecodeError."""
    for kwargs in ({"ports": None}, {"ports": (1153,), "max_pending": 256,
                                     "max_apdu_size": 512}):
        try:
            records = list(read_capture(io.BytesIO(data), **kwargs))
        except DecodeError:
            continue
        for rec in records:
            assert isinstance(rec.data, bytes)
            assert rec.error is None or isinstance(rec.error, DecodeError)


# --------------------------------------------------------------------------- encode


def encode_record(value: object) -> bytes:
    """What `c1222 encode` does with one JSON record (cli/codec.py), secured with KEYS when
    the record asks for it. C1222Error or ValueError for a bad record."""
    apdu = text.from_json(value)
    epsem = apdu.epsem
    if epsem.security_mode in (1, 2) and epsem.ciphertext is None:
        return protect(apdu, KEYS, key_id=KEY_IDS[0], iv=b"\x00\x00\x00\x01")
    return apdu.encode()


#: Sample records (the canonical JSON of every sample message) and every key they use.
_ENCODE_SEEDS: list[dict] = [text.to_json(m) for m in messages()]
_KEYS = sorted({k for m in _ENCODE_SEEDS for k in m}
               | {k for m in _ENCODE_SEEDS for s in m["services"] for k in s})


def _json_value(r: Reader, depth: int = 0) -> object:
    kind = r.byte() % (9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return bool(r.byte() & 1)
    if kind == 2:
        return int.from_bytes(r.take(r.byte() % 10), "big") - (r.byte() << 8)
    if kind == 3:
        return r.byte() / 7.0
    if kind == 4:
        return r.take(r.byte() % 24).decode("latin-1")
    if kind == 5:
        return r.take(r.byte() % 24).hex()
    if kind == 6:
        return [_json_value(r, depth + 1) for _ in range(r.byte() % 4)]
    if kind == 7:
        return {r.pick(_KEYS): _json_value(r, depth + 1) for _ in range(r.byte() % 4)}
    return "." + ".".join(str(r.byte()) for _ in range(r.byte() % 5))


def target_encode_json(data: bytes) -> None:
    """The JSON -> bytes path of `c1222 encode`: bytes, or C1222Error/ValueError.

    Mode 0 parses the fuzzer's bytes as a JSON line; mode 1 takes a sample record and
    replaces a few fields (top level or in a service) by generated JSON values.
    """
    r = Reader(data)
    if r.byte() & 1 == 0:
        try:
            value = json.loads(r.rest())
        except (ValueError, RecursionError):
            return  # not JSON: the CLI's json.loads reports it as a ValueError
    else:
        value = json.loads(json.dumps(r.pick(_ENCODE_SEEDS)))
        for _ in range(1 + r.byte() % 3):
            where = value
            services = value.get("services")
            if isinstance(services, list) and services and r.byte() & 1:
                service = r.pick(services)
                where = service if isinstance(service, dict) else value
            where[r.pick(_KEYS)] = _json_value(r)
    try:
        out = encode_record(value)
    except (C1222Error, ValueError):
        return
    assert isinstance(out, bytes)


# --------------------------------------------------------------------------- segments


def target_segments(data: bytes) -> None:
    """Segments (codec.segments) and native addresses (codec.native): a flag byte, a segment
    size, then either APDUs fed to a small Reassembler as segments (any bytes: they must give
    a whole APDU, None, a ServiceError or a DecodeError), or a whole APDU cut and fed back in
    a fuzzed order, which must give it back; the rest is also read as a native address."""
    from c1222.codec.native import decode_native_address, native_address_text
    from c1222.codec.segments import Reassembler, ReassemblyLimits, segment
    from c1222.errors import LocalProtocolError

    r = Reader(data)
    flags, size = r.byte(), 64 + r.u16() % 1024
    rest = r.rest()
    try:
        decode_native_address(rest[:20])
    except DecodeError:
        pass
    assert isinstance(native_address_text(rest[:20]), str)
    reassembler = Reassembler(ReassemblyLimits(max_size=4096, max_pending=4,
                                               max_per_association=2, max_buffered=8192,
                                               max_ranges=4))
    if flags & 1:
        try:
            apdus, _ = split_apdus(rest)
        except DecodeError:
            return
        for apdu in apdus:
            _feed(reassembler, apdu, flags)
        return
    try:
        apdu = acse.decode(rest)
    except DecodeError:
        return
    if apdu.called_ae_qualifier is not None:
        return
    try:
        parts = segment(rest, size)
    except LocalProtocolError:
        return
    assert all(len(p) <= size for p in parts)
    order = sorted(range(len(parts)), key=lambda i: (i * (flags | 1)) % (len(parts) + 1))
    reassembler = Reassembler(ReassemblyLimits(max_size=len(rest), max_ranges=len(parts)))
    got = [_feed(reassembler, parts[i], flags) for i in order] if len(parts) > 1 else [rest]
    assert rest in got, "segments did not reassemble to the APDU"


def _feed(reassembler, apdu: bytes, flags: int) -> bytes | None:  # noqa: ANN001
    from c1222.errors import ServiceError

    try:
        header = acse.segment_header(apdu)
    except DecodeError:
        return None
    if header is None:
        return apdu
    try:
        whole = reassembler.feed(header, flags >> 4, 0.0)
    except ServiceError:
        return None
    assert whole is None or len(whole) == header.total
    assert reassembler.pending <= reassembler.limits.max_pending
    return whole


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    doc: str


TARGETS: dict[str, Target] = {
    t.name: t for t in (
        Target("apdu", target_apdu, "acse.decode (no requests) + header walks"),
        Target("apdu_typed", target_apdu_typed, "acse.decode typed by requests or a lookup"),
        Target("unprotect", target_unprotect, "crypto.policy.unprotect and make_unprotect"),
        Target("framer", target_framer, "codec.framing.StreamFramer with random chunking"),
        Target("tables", target_tables, "every table decoder under fuzzed context tables"),
        Target("readings", target_readings, "every tables.readings reader"),
        Target("store", target_store, "table reads/writes and procedures on the meter's store"),
        Target("pcap", target_pcap, "transport.pcap.read_capture on pcap/pcapng bytes"),
        Target("encode_json", target_encode_json, "JSON record -> bytes (c1222 encode)"),
        Target("segments", target_segments, "codec.segments and codec.native"),
    )
}
