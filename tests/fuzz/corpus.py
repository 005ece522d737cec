"""Seed inputs of each target: the captures made by others (../shared/captures, read where
they are, never copied) and the project's own sample messages (c1222.codec.samples), cut
into the input format of each target (tests/fuzz/targets.py)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

from c1222.codec import text
from c1222.codec.samples import exchanges, messages, secured_variant
from c1222.crypto.policy import protect
from c1222.errors import DecodeError
from c1222.tables.profile import MeterProfile, default_store
from c1222.transport.pcap import PcapWriter, read_capture
from tests.fuzz import targets

REPO_ROOT = Path(__file__).resolve().parents[2]
CAPTURES_DIR = REPO_ROOT.parent / "shared" / "captures"


def capture_files() -> list[Path]:
    if not CAPTURES_DIR.is_dir():
        return []
    return sorted(p for p in CAPTURES_DIR.iterdir() if p.suffix in (".pcap", ".cap", ".pcapng"))


def capture_apdus() -> list[bytes]:
    """Every APDU of every capture (TCP and UDP, any port)."""
    out: list[bytes] = []
    for path in capture_files():
        try:
            out += [rec.data for rec in read_capture(path, ports=None) if rec.ok]
        except DecodeError:
            continue
    return out


def sample_apdus() -> list[bytes]:
    """The sample messages in clear and secured in modes 1 and 2 with the targets' keys."""
    out = []
    for i, apdu in enumerate(messages()):
        out.append(apdu.encode())
        for mode in (1, 2):
            kid = targets.KEY_IDS[i % 2]
            out.append(protect(secured_variant(apdu, mode, kid, i.to_bytes(4, "big")),
                               targets.KEYS))
    return out


def _typed_seeds(apdus: list[bytes]) -> Iterator[bytes]:
    """Each response with the indices of the requests it answers (target_apdu_typed)."""
    pairs = [(req, resp) for req, resp in exchanges()]
    for i, data in enumerate(apdus):
        requests = pairs[(i // 2) % len(pairs)][0][:3]
        head = len(requests) | (0x0C if i % 3 == 0 else 0)
        yield bytes([head] + [targets.REQUESTS.index(r) for r in requests]) + data


def _profiles() -> list[MeterProfile]:
    """The default meter and variants of Table 0's formats, so seeds cover each coding."""
    return [
        # Small load-profile and log dimensions: a 40 x 96 load profile makes a 40 KB seed that
        # the fuzzer would spend all its time decoding.
        MeterProfile(lp_nbr_blks=2, lp_nbr_blk_ints=6, nbr_history_entries=4),
        MeterProfile(data_order=1, tm_format=4, ni_format1=0, ni_format2=1, char_format=3,
                     lp_nbr_blks=1, lp_nbr_blk_ints=3, nbr_history_entries=2),
        MeterProfile(tm_format=1, ni_format1=2, ni_format2=5, int_format=2, id_form=1,
                     lp_nbr_blks=2, lp_nbr_blk_ints=4, nbr_history_entries=3),
        MeterProfile(tm_format=3, ni_format1=4, ni_format2=13, lp_nbr_blks=3,
                     lp_nbr_blk_ints=2, nbr_history_entries=2),
    ]


def table_seeds() -> list[bytes]:
    out = []
    for profile in _profiles():
        store = default_store(profile)
        tables = {n: store.get_bytes(n) for n in store.numbers() if n in targets.TABLE_NUMBERS}
        out.append(targets.pack_tables(tables))
        # A smaller seed without the big load-profile and log tables.
        out.append(targets.pack_tables({n: b for n, b in tables.items() if n not in (64, 74)}))
    return out


def _store_seeds() -> list[bytes]:
    """A write of each table's own bytes, index and offset reads, and each procedure."""
    store = targets._fresh_store()
    numbers = store.numbers()
    out = []
    for i, n in enumerate(numbers):
        raw = store.get_bytes(n)
        out.append(bytes((0x03 | 4, i, 3, i)) + len(raw).to_bytes(2, "big") + raw
                   + bytes((2, i, 1, 1, 0, 1)))
    for proc in (0, 3, 4, 5, 6, 7, 8, 9, 10, 14):
        table7 = proc.to_bytes(2, "little") + b"\x01" + bytes(range(7))
        out.append(bytes((0x03, 3, numbers.index(7))) + len(table7).to_bytes(2, "big") + table7)
    return out


def _written_pcap(apdus: list[bytes]) -> bytes:
    buf = io.BytesIO()
    with PcapWriter(buf) as writer:
        conn = writer.tcp_connection()
        for i, apdu in enumerate(apdus[:8]):
            conn.send(apdu, from_client=i % 2 == 0, split=7 if i % 3 == 0 else None)
        writer.udp(("10.0.0.1", 1153), ("10.0.0.2", 1153), apdus[0])
        return buf.getvalue()


def seeds(name: str) -> list[bytes]:
    """The seed inputs of target ``name``."""
    apdus = sample_apdus() + capture_apdus()
    if name == "apdu":
        return apdus
    if name == "apdu_typed":
        return list(_typed_seeds(apdus))
    if name == "unprotect":
        # flags: sign (1), replay (2), minimum mode (8, 16), typed requests (32), observer (64)
        return [bytes((flags, 1)) + a for a in apdus for flags in (0x00, 0x4B)]
    if name == "framer":
        stream = b"".join(apdus[:6])
        return [bytes((0x30, 3, 0, 9, 64, 1)) + stream, bytes((0x01, 0, 64)) + stream,
                bytes((0xF0,) + tuple(range(1, 16))) + stream]
    if name in ("tables", "readings"):
        return table_seeds()
    if name == "store":
        return _store_seeds()
    if name == "pcap":
        files = [p.read_bytes() for p in capture_files()]
        return files + [_written_pcap(apdus)]
    if name == "encode_json":
        records = [json.dumps(text.to_json(m)).encode() for m in messages()]
        return [b"\x00" + r for r in records] + [bytes((1, i)) for i in range(0, 256, 17)]
    if name == "segments":
        from c1222.codec.segments import segment

        big = [a for a in apdus if len(a) > 100][:20]
        cut = [b"".join(segment(a, 80)) for a in big]
        return ([bytes((0, 0, 16)) + a for a in big] + [bytes((1, 0, 0)) + c for c in cut]
                + [bytes((0x31, 0, 40)) + a for a in big])
    raise KeyError(name)


def write_seeds(name: str, directory: Path) -> int:
    """Write the seeds of ``name`` into ``directory``; return how many."""
    directory.mkdir(parents=True, exist_ok=True)
    found = seeds(name)
    for i, data in enumerate(found):
        (directory / f"seed-{i:04d}").write_bytes(data)
    return len(found)


__all__ = ["CAPTURES_DIR", "capture_files", "seeds", "write_seeds"]
