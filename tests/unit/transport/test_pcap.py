"""Reading and writing capture files (c1222.transport.pcap): the shared captures,
TCP reassembly, link types, hostile input, and writer -> reader round trips."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c1222.codec.framing import apdu_size
from c1222.errors import (
    BerError,
    C1222Error,
    ConfigurationError,
    DecodeError,
    DecodeLimitExceeded,
    Truncated,
)
from c1222.transport.pcap import CapturedApdu, PcapWriter, TcpConnection, read_capture
from tests.vectors import EX8_REQUEST, EX8_RESPONSE, IDENT_REQUEST, IDENT_RESPONSE, READ_REQUEST, READ_RESPONSE

CAPTURES = Path(__file__).resolve().parents[3].parent / "shared" / "captures"

APDUS = [EX8_REQUEST, EX8_RESPONSE, IDENT_REQUEST, IDENT_RESPONSE, READ_REQUEST, READ_RESPONSE]

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 1153)


@pytest.fixture(scope="module")
def captures_dir() -> Path:
    """../shared/captures; skipped on a fresh clone, required under C1222_REQUIRE_ALL=1."""
    if not CAPTURES.is_dir():
        if os.environ.get("C1222_REQUIRE_ALL") == "1":
            pytest.fail(f"captures missing at {CAPTURES} (C1222_REQUIRE_ALL=1)", pytrace=False)
        pytest.skip(f"the captures made by others are not at {CAPTURES}")
    return CAPTURES


def capture(build: Callable[[PcapWriter], None], **options: object) -> bytes:
    """The bytes of a pcap written by ``build``."""
    buf = io.BytesIO()
    writer = PcapWriter(buf, start_time=1_700_000_000.0, **options)  # type: ignore[arg-type]
    build(writer)
    return buf.getvalue()


def read(data: bytes, **options: object) -> list[CapturedApdu]:
    return list(read_capture(io.BytesIO(data), **options))  # type: ignore[arg-type]


def apdus(records: list[CapturedApdu]) -> list[bytes]:
    return [r.data for r in records if r.error is None]


def test_the_spec_vectors_are_whole_apdus() -> None:
    # Guards the hex above: each is one APDU whose BER length covers it exactly.
    assert [len(a) for a in APDUS] == [81, 74, 50, 91, 31, 47]
    for apdu in APDUS:
        assert apdu[0] == 0x60 and apdu[1] == len(apdu) - 2


# --------------------------------------------------------------------------- shared captures

SERVICE_CAPTURES = [f"c1222_{name}_tcp.pcap" for name in
                    ("ident_service", "logon_service", "reg_service", "resolve_service",
                     "rw_service", "security_service", "service_error", "trace_service",
                     "wait_service")]
EXPECTED = {
    # file: [(frame, src, dst)] as tshark -Y c1222 shows them
    **{name: [(4, "192.168.100.124:1577", "192.168.1.101:1153"),
              (5, "192.168.1.101:1153", "192.168.100.124:1577")] for name in SERVICE_CAPTURES},
    "c1222_std_example8.pcap": [(1, "10.1.1.1:1153", "10.2.2.2:50000"),
                                (2, "10.1.1.1:1153", "10.2.2.2:50000")],
    "c1222overIPv4.cap": [(1, "192.168.1.101:1577", "192.168.100.124:1153"),
                          (2, "192.168.100.124:1153", "192.168.1.101:1577")],
    "c1222_over_ipv6.pcap": [(6, "[fe80::21e:ecff:fe30:9474]:42787",
                              "[fe80::203:47ff:feeb:3faf]:1153"),
                             (8, "[fe80::203:47ff:feeb:3faf]:1153",
                              "[fe80::21e:ecff:fe30:9474]:42787")],
}


def test_every_shared_capture_is_listed(captures_dir: Path) -> None:
    found = {p.name for p in captures_dir.iterdir() if p.suffix in (".pcap", ".cap", ".pcapng")}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_capture(captures_dir: Path, name: str) -> None:
    records = list(read_capture(captures_dir / name))
    assert [(r.frame, r.src, r.dst) for r in records] == EXPECTED[name]
    for r in records:
        assert r.error is None
        assert r.transport == "tcp"
        assert r.data[0] == 0x60
        assert apdu_size(r.data) == len(r.data)
        assert r.time > 1e9
    assert records[0].time <= records[1].time


def test_shared_captures_hold_the_spec_examples(captures_dir: Path) -> None:
    example8 = apdus(list(read_capture(captures_dir / "c1222_std_example8.pcap")))
    assert example8 == [EX8_REQUEST, EX8_RESPONSE]
    ident = apdus(list(read_capture(captures_dir / "c1222_ident_service_tcp.pcap")))
    assert ident == [IDENT_REQUEST, IDENT_RESPONSE]


def test_real_captures_sizes(captures_dir: Path) -> None:
    ipv4 = apdus(list(read_capture(captures_dir / "c1222overIPv4.cap")))
    ipv6 = apdus(list(read_capture(captures_dir / "c1222_over_ipv6.pcap")))
    assert [len(a) for a in ipv4] == [73, 111]
    assert [len(a) for a in ipv6] == [104, 155]
    assert ipv4[0][-4:] == bytes.fromhex("a71f7f27")  # the MAC of digest 8.4


def test_ports_filter(captures_dir: Path) -> None:
    path = captures_dir / "c1222_ident_service_tcp.pcap"
    assert list(read_capture(path, ports=(80,))) == []
    assert len(list(read_capture(path, ports=None))) == 2
    assert len(list(read_capture(path, ports=[1577]))) == 2


def test_reads_file_objects_and_unseekable_streams(captures_dir: Path) -> None:
    data = (captures_dir / "c1222_std_example8.pcap").read_bytes()

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self._src = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            chunk = self._src.read(min(len(b), 7))  # short reads, like a pipe
            b[: len(chunk)] = chunk
            return len(chunk)

    from_pipe = list(read_capture(io.BufferedReader(Pipe())))
    from_path = list(read_capture(captures_dir / "c1222_std_example8.pcap"))
    assert from_pipe == from_path and len(from_path) == 2


# --------------------------------------------------------------------------- reassembly


def one_connection(*sends: tuple[bytes, dict[str, object]], **conn_options: object
                   ) -> list[CapturedApdu]:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER, **conn_options)  # type: ignore[arg-type]
        for apdu, kw in sends:
            conn.send(apdu, **kw)  # type: ignore[arg-type]
        conn.close()
    return read(capture(build))


@pytest.mark.parametrize("pieces", [2, 3, 4, 5])
def test_apdu_split_over_segments(pieces: int) -> None:
    size = -(-len(EX8_REQUEST) // pieces)
    records = one_connection((EX8_REQUEST, {"split": size}), (EX8_RESPONSE, {"from_client": False}))
    # Handshake is frames 1-3; the request completes in its last segment.
    assert [(r.frame, r.data) for r in records] == [(3 + pieces, EX8_REQUEST),
                                                    (4 + pieces, EX8_RESPONSE)]
    assert records[0].src == "10.0.0.1:40000" and records[0].dst == "10.0.0.2:1153"
    assert records[1].src == "10.0.0.2:1153"


def test_split_at_every_byte() -> None:
    records = one_connection((READ_REQUEST, {"split": 1}))
    assert [(r.frame, r.data) for r in records] == [(3 + len(READ_REQUEST), READ_REQUEST)]


def test_three_apdus_in_one_segment() -> None:
    records = one_connection((EX8_REQUEST + IDENT_REQUEST + READ_REQUEST, {}))
    assert [(r.frame, r.data) for r in records] == [
        (4, EX8_REQUEST), (4, IDENT_REQUEST), (4, READ_REQUEST)]


def test_apdus_straddling_segments() -> None:
    stream = EX8_REQUEST + IDENT_REQUEST + READ_REQUEST
    records = one_connection((stream, {"split": [90, 50]}))  # 90 | 50 | rest
    assert [(r.frame, r.data) for r in records] == [
        (4, EX8_REQUEST), (5, IDENT_REQUEST), (6, READ_REQUEST)]


def test_mss_splits_long_apdus() -> None:
    big = b"\x60\x82\x05\xdc" + bytes(1500)  # 1504 bytes, framing only needs the outer TLV
    data = capture(lambda w: w.tcp_connection(CLIENT, SERVER).send(big), mss=536)
    frames = list(dpkt.pcap.Reader(io.BytesIO(data)))
    assert len(frames) == 3 + 3
    assert [(r.frame, r.data) for r in read(data)] == [(6, big)]


def test_out_of_order_segments() -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER)
        conn.segment(EX8_REQUEST[40:], offset=40)      # frame 4: the tail first
        conn.segment(IDENT_REQUEST, offset=81)         # frame 5: the next APDU, still early
        conn.segment(EX8_REQUEST[:40], offset=0)       # frame 6: fills the gap
        conn.send(READ_REQUEST)                        # frame 7
    records = read(capture(build))
    assert [(r.frame, r.data) for r in records] == [
        (6, EX8_REQUEST), (6, IDENT_REQUEST), (7, READ_REQUEST)]


def test_retransmitted_and_overlapping_segments() -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER)
        conn.segment(EX8_REQUEST[:50], offset=0)   # 4
        conn.segment(EX8_REQUEST[:50], offset=0)   # 5: plain retransmission
        conn.segment(EX8_REQUEST[20:70], offset=20)  # 6: overlap with 20 new bytes
        conn.segment(EX8_REQUEST[70:], offset=70)  # 7: completes the APDU
        conn.segment(EX8_REQUEST[70:], offset=70)  # 8: retransmission of old bytes only
        conn.send(READ_REQUEST)                    # 9
        conn.segment(READ_REQUEST, offset=81)      # 10: whole-APDU retransmission
    records = read(capture(build))
    assert [(r.frame, r.data) for r in records] == [(7, EX8_REQUEST), (9, READ_REQUEST)]


def test_duplicate_out_of_order_segments_keep_the_longest() -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER)
        conn.segment(EX8_REQUEST[10:20], offset=10)
        conn.segment(EX8_REQUEST[10:], offset=10)
        conn.segment(EX8_REQUEST[10:30], offset=10)
        conn.segment(EX8_REQUEST[:10], offset=0)
    assert apdus(read(capture(build))) == [EX8_REQUEST]


@pytest.mark.parametrize("isn", [0xFFFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF - 81, 0x7FFFFFFF])
def test_sequence_number_wrap_around(isn: int) -> None:
    records = one_connection(
        (EX8_REQUEST, {"split": 16}), (IDENT_REQUEST, {}), (READ_REQUEST, {"split": 7}),
        (EX8_RESPONSE, {"from_client": False, "split": 9}),
        client_isn=isn, server_isn=isn - 3)
    assert apdus(records) == [EX8_REQUEST, IDENT_REQUEST, READ_REQUEST, EX8_RESPONSE]


def test_out_of_order_across_the_wrap() -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER, client_isn=0xFFFFFFFF - 30)
        conn.segment(EX8_REQUEST[40:], offset=40)  # sequence numbers past 2**32
        conn.segment(EX8_REQUEST[:40], offset=0)
    assert [(r.frame, r.data) for r in read(capture(build))] == [(5, EX8_REQUEST)]


def test_capture_started_mid_connection() -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER, client_isn=123456, handshake=False)
        conn.segment(READ_REQUEST, offset=500)
        conn.segment(READ_RESPONSE, from_client=False, offset=900)
        conn.segment(EX8_REQUEST, offset=500 + len(READ_REQUEST))
    assert [(r.frame, r.data) for r in read(capture(build))] == [
        (1, READ_REQUEST), (2, READ_RESPONSE), (3, EX8_REQUEST)]


def test_new_connection_on_the_same_ports() -> None:
    def build(w: PcapWriter) -> None:
        first = w.tcp_connection(CLIENT, SERVER, client_isn=1000)
        first.send(READ_REQUEST[:10])            # left incomplete
        second = w.tcp_connection(CLIENT, SERVER, client_isn=90000)
        second.send(READ_REQUEST)
    records = read(capture(build))
    assert [(r.frame, type(r.error)) for r in records] == [(4, Truncated), (8, type(None))]
    assert records[1].data == READ_REQUEST


def test_interleaved_connections() -> None:
    def build(w: PcapWriter) -> None:
        a = w.tcp_connection(("10.0.0.1", 40001), SERVER)
        b = w.tcp_connection(("10.0.0.3", 40002), SERVER)
        a.send(EX8_REQUEST, split=[30])   # 7, 8
        b.send(IDENT_REQUEST, split=[20])  # 9, 10
        a.send(EX8_RESPONSE, from_client=False)  # 11
        b.send(IDENT_RESPONSE, from_client=False)  # 12
    records = read(capture(build))
    assert [(r.frame, r.src, r.data) for r in records] == [
        (8, "10.0.0.1:40001", EX8_REQUEST), (10, "10.0.0.3:40002", IDENT_REQUEST),
        (11, "10.0.0.2:1153", EX8_RESPONSE), (12, "10.0.0.2:1153", IDENT_RESPONSE)]


def test_ipv6_tcp_and_udp() -> None:
    client, server = ("2001:db8::1", 40000), ("2001:db8::2", 1153)

    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(client, server)
        conn.send(EX8_REQUEST, split=10)
        conn.send(EX8_RESPONSE, from_client=False)
        w.udp(client, server, READ_REQUEST)
    records = read(capture(build))
    assert [(r.transport, r.src, r.dst, r.data) for r in records] == [
        ("tcp", "[2001:db8::1]:40000", "[2001:db8::2]:1153", EX8_REQUEST),
        ("tcp", "[2001:db8::2]:1153", "[2001:db8::1]:40000", EX8_RESPONSE),
        ("udp", "[2001:db8::1]:40000", "[2001:db8::2]:1153", READ_REQUEST)]


def test_udp_datagrams() -> None:
    def build(w: PcapWriter) -> None:
        w.udp(CLIENT, SERVER, EX8_REQUEST)
        w.udp(SERVER, CLIENT, EX8_RESPONSE)
        w.udp(CLIENT, SERVER, EX8_REQUEST[:-1])               # one byte short
        w.udp(CLIENT, SERVER, READ_REQUEST + b"\x00")         # one byte extra
        w.udp(CLIENT, SERVER, b"\x30\x03abc")                 # not an APDU
        w.udp(CLIENT, ("10.0.0.2", 53), b"\x00" * 12)         # not our port
        w.udp(CLIENT, SERVER, READ_REQUEST)
    records = read(capture(build))
    assert [(r.frame, r.transport, type(r.error)) for r in records] == [
        (1, "udp", type(None)), (2, "udp", type(None)), (3, "udp", Truncated),
        (4, "udp", DecodeError), (5, "udp", BerError), (7, "udp", type(None))]
    assert records[0].data == EX8_REQUEST and records[-1].data == READ_REQUEST
    assert records[2].data == EX8_REQUEST[:-1]  # an error record shows what was there


def test_ipv6_extension_headers_are_skipped() -> None:
    def build(w: PcapWriter) -> None:
        w.udp(("2001:db8::1", 40000), ("2001:db8::2", 1153), READ_REQUEST)
    frame = bytearray(list(dpkt.pcap.Reader(io.BytesIO(capture(build))))[0][1])
    # Insert an 8-byte hop-by-hop header (next header UDP) after the 40-byte IPv6 header.
    ip = 14
    hop = bytes([17, 0, 1, 4, 0, 0, 0, 0])  # PadN option fills it
    frame[ip + 6] = 0
    frame[ip + 4 : ip + 6] = (int.from_bytes(frame[ip + 4 : ip + 6], "big") + 8).to_bytes(2, "big")
    frame[ip + 40 : ip + 40] = hop
    out = io.BytesIO()
    dpkt.pcap.Writer(out).writepkt(bytes(frame), ts=1.0)
    assert apdus(read(out.getvalue())) == [READ_REQUEST]


# --------------------------------------------------------------------------- containers and links


def sample_capture() -> bytes:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER)
        conn.send(EX8_REQUEST, split=[30, 30])
        conn.send(EX8_RESPONSE + READ_RESPONSE, from_client=False)
        w.udp(CLIENT, SERVER, IDENT_REQUEST)
        v6 = w.tcp_connection(("fd00::1", 40001), ("fd00::2", 1153))
        v6.send(IDENT_RESPONSE)
    return capture(build)


def relink(data: bytes, linktype: int, convert: Callable[[bytes], bytes], *,
           nano: bool = False) -> bytes:
    """The same frames with another link-layer header."""
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, snaplen=65535, linktype=linktype, nano=nano)
    for ts, frame in dpkt.pcap.Reader(io.BytesIO(data)):
        writer.writepkt(convert(frame), ts=ts)
    return out.getvalue()


def _family(frame: bytes) -> int:
    return 2 if frame[12:14] == b"\x08\x00" else 10


LINKS: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "sll": (113, lambda f: struct.pack("!HHH8s", 0, 1, 6, f[6:12]) + f[12:]),
    "sll2": (276, lambda f: f[12:14] + struct.pack("!HIHBB8s", 0, 1, 1, 0, 6, f[6:12]) + f[14:]),
    "raw": (101, lambda f: f[14:]),
    "raw-ipv4-or-ipv6": (12, lambda f: f[14:]),
    "null-little-endian": (0, lambda f: struct.pack("<I", _family(f)) + f[14:]),
    "null-big-endian": (0, lambda f: struct.pack(">I", _family(f)) + f[14:]),
    "loop": (108, lambda f: struct.pack(">I", _family(f)) + f[14:]),
    "vlan": (1, lambda f: f[:12] + b"\x81\x00\x00\x05" + f[12:]),
    "qinq": (1, lambda f: f[:12] + b"\x88\xa8\x00\x05\x81\x00\x00\x06" + f[12:]),
}


@pytest.mark.parametrize("link", sorted(LINKS))
def test_link_types(link: str) -> None:
    linktype, convert = LINKS[link]
    expected = read(sample_capture())
    assert len(expected) == 5
    assert read(relink(sample_capture(), linktype, convert)) == expected


def test_raw_ipv4_and_ipv6_link_types() -> None:
    data = sample_capture()
    v4 = relink(data, 228, lambda f: f[14:] if f[12:14] == b"\x08\x00" else b"\x60")
    v6 = relink(data, 229, lambda f: f[14:] if f[12:14] == b"\x86\xdd" else b"\x40")
    assert [r.src for r in read(v4)] == ["10.0.0.1:40000", "10.0.0.2:1153", "10.0.0.2:1153",
                                         "10.0.0.1:40000"]
    assert [r.data for r in read(v6)] == [IDENT_RESPONSE]


def test_nanosecond_pcap_keeps_times() -> None:
    data = sample_capture()
    nano = relink(data, 1, lambda f: f, nano=True)
    assert nano[:4] != data[:4]
    assert read(nano) == read(data)
    assert [r.time for r in read(nano)] == [r.time for r in read(data)]


def test_pcapng() -> None:
    data = sample_capture()
    out = io.BytesIO()
    writer = dpkt.pcapng.Writer(out, snaplen=65535, linktype=1)
    for ts, frame in dpkt.pcap.Reader(io.BytesIO(data)):
        writer.writepkt(frame, ts=ts)
    assert out.getvalue()[:4] == b"\x0a\x0d\x0d\x0a"
    records = read(out.getvalue())
    assert records == read(data)
    assert [r.time for r in records] == pytest.approx([r.time for r in read(data)], abs=1e-6)


def test_big_endian_pcap() -> None:
    data = sample_capture()
    out = io.BytesIO()
    for ts, frame in dpkt.pcap.Reader(io.BytesIO(data)):
        if not out.tell():
            out.write(bytes(dpkt.pcap.FileHdr(snaplen=65535, linktype=1)))
        sec, usec = int(ts), round(ts % 1 * 1e6)
        out.write(bytes(dpkt.pcap.PktHdr(tv_sec=sec, tv_usec=usec, caplen=len(frame),
                                         len=len(frame))) + frame)
    assert out.getvalue()[:4] == b"\xa1\xb2\xc3\xd4"
    assert read(out.getvalue()) == read(data)


# --------------------------------------------------------------------------- hostile input


def test_garbage_on_the_port_gives_an_error_and_the_reader_goes_on() -> None:
    def build(w: PcapWriter) -> None:
        bad = w.tcp_connection(("10.0.0.9", 40009), SERVER)
        good = w.tcp_connection(CLIENT, SERVER)
        bad.send(b"GET / HTTP/1.1\r\n\r\n")     # 7
        good.send(EX8_REQUEST)                  # 8
        bad.send(READ_REQUEST)                  # 9: the broken direction stays skipped
        bad.send(READ_RESPONSE, from_client=False)  # 10: the other direction still works
        good.send(EX8_RESPONSE, from_client=False)  # 11
    records = read(capture(build))
    assert [(r.frame, r.src, type(r.error)) for r in records] == [
        (7, "10.0.0.9:40009", BerError), (8, "10.0.0.1:40000", type(None)),
        (10, "10.0.0.2:1153", type(None)), (11, "10.0.0.2:1153", type(None))]
    assert records[0].data == b"GET / HTTP/1.1\r\n\r\n"
    assert isinstance(records[0].error, DecodeError)


def test_garbage_after_a_good_apdu_in_the_same_segment() -> None:
    records = one_connection((READ_REQUEST + b"\x00\x01\x02", {}), (EX8_REQUEST, {}))
    assert [(r.frame, r.data[:1], type(r.error)) for r in records] == [
        (4, b"\x60", type(None)), (4, READ_REQUEST[:1], BerError)]


def test_apdu_over_the_size_limit() -> None:
    records = one_connection((b"\x60\x84\x10\x00\x00\x00" + bytes(100), {}))  # 256 MiB
    assert len(records) == 1 and isinstance(records[0].error, DecodeLimitExceeded)
    data = capture(lambda w: w.tcp_connection(CLIENT, SERVER).send(EX8_REQUEST))
    assert isinstance(read(data, max_apdu_size=80)[0].error, DecodeLimitExceeded)


def test_out_of_order_buffer_is_bounded() -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER)
        for i in range(10):  # a gap at offset 0 that never fills
            conn.segment(bytes(100), offset=1 + 100 * i)
        conn.send(EX8_RESPONSE, from_client=False)
    records = read(capture(build), max_pending=450)
    assert [(r.frame, type(r.error)) for r in records] == [
        (8, DecodeLimitExceeded), (14, type(None))]


def test_stream_ending_inside_an_apdu() -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER)
        conn.send(EX8_REQUEST)
        conn.send(READ_REQUEST[:12])
        conn.segment(b"\x60\x01\x00", offset=200)  # never reached
    records = read(capture(build))
    assert [(r.frame, type(r.error)) for r in records] == [(4, type(None)), (6, Truncated)]
    assert "15 bytes" in str(records[1].error)


def test_frame_cut_by_the_snap_length() -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER)
        conn.send(EX8_REQUEST)                       # 4
        conn.send(READ_REQUEST + EX8_REQUEST)        # 5: cut to 80 bytes below
        conn.send(EX8_RESPONSE, from_client=False)   # 6
    frames = list(dpkt.pcap.Reader(io.BytesIO(capture(build))))
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, snaplen=80)
    for number, (ts, frame) in enumerate(frames, 1):
        writer.writepkt(frame[:80] if number == 5 else frame, ts=ts)
    records = read(out.getvalue())
    assert [(r.frame, type(r.error)) for r in records] == [
        (4, type(None)), (5, Truncated), (6, type(None))]


def test_ip_fragments_are_reported() -> None:
    data = capture(lambda w: w.udp(CLIENT, SERVER, EX8_REQUEST))
    ts, frame = list(dpkt.pcap.Reader(io.BytesIO(data)))[0]
    first = bytearray(frame)
    first[14 + 6] |= 0x20  # more fragments
    later = bytearray(frame)
    later[14 + 7] = 8      # fragment offset 64
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out)
    writer.writepkt(bytes(first), ts=ts)
    writer.writepkt(bytes(later), ts=ts)
    records = read(out.getvalue())
    assert [(r.frame, type(r.error)) for r in records] == [(1, Truncated)]


def test_not_a_capture() -> None:
    with pytest.raises(Truncated):
        read(b"")
    with pytest.raises(DecodeError, match="not a pcap or pcapng"):
        read(b"GET / HTTP/1.1\r\n\r\n" * 3)


def test_unsupported_link_type() -> None:
    out = io.BytesIO()
    dpkt.pcap.Writer(out, linktype=105).writepkt(b"\x00" * 40, ts=1.0)  # 802.11
    with pytest.raises(DecodeError, match="link type 105"):
        read(out.getvalue())


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncated_capture_file_at_every_length(fmt: str) -> None:
    data = sample_capture()
    if fmt == "pcapng":
        out = io.BytesIO()
        writer = dpkt.pcapng.Writer(out, snaplen=65535)
        for ts, frame in dpkt.pcap.Reader(io.BytesIO(data)):
            writer.writepkt(frame, ts=ts)
        data = out.getvalue()
    full = apdus(read(data))
    for cut in range(len(data)):
        got: list[CapturedApdu] = []
        try:
            for record in read_capture(io.BytesIO(data[:cut])):
                got.append(record)
        except DecodeError:
            pass  # a clear c1222 error is one of the two allowed endings
        assert apdus(got) == full[: len(apdus(got))], cut


frame_bytes = st.binary(min_size=0, max_size=120)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["raw", "tcp", "udp"]), frame_bytes), max_size=8))
def test_random_frames_never_escape_as_other_exceptions(
        frames: list[tuple[str, bytes]]) -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER)
        for kind, payload in frames:
            if kind == "raw":
                header = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
                w.write_frame(header + payload)
            elif kind == "tcp":
                conn.segment(payload, offset=len(payload) % 7)
            else:
                w.udp(CLIENT, SERVER, payload)
    try:
        records = read(capture(build))
    except C1222Error:
        return
    for record in records:
        assert record.error is None or isinstance(record.error, DecodeError)
        assert record.error is not None or record.data[0] == 0x60


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=24, max_size=300))
def test_random_capture_files_raise_only_decode_errors(tail: bytes) -> None:
    header = bytes(dpkt.pcap.LEFileHdr(snaplen=65535, linktype=1))
    for data in (header + tail, b"\x0a\x0d\x0d\x0a" + tail):
        try:
            read(data)
        except DecodeError:
            pass


# --------------------------------------------------------------------------- writer


@given(st.lists(st.tuples(st.sampled_from(APDUS), st.booleans(), st.integers(1, 100)),
                min_size=1, max_size=12),
       st.integers(0, 0xFFFFFFFF))
@settings(max_examples=100, deadline=None)
def test_writer_reader_round_trip(sends: list[tuple[bytes, bool, int]], isn: int) -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER, client_isn=isn, server_isn=isn ^ 0x5555)
        for apdu, from_client, split in sends:
            conn.send(apdu, from_client=from_client, split=split)
            w.udp(CLIENT if from_client else SERVER, SERVER if from_client else CLIENT, apdu)
        conn.close()
    records = read(capture(build))
    assert all(r.error is None for r in records)
    assert [r.data for r in records if r.transport == "tcp"] == [s[0] for s in sends]
    assert [r.data for r in records if r.transport == "udp"] == [s[0] for s in sends]
    for record, (_, from_client, _) in zip(
            [r for r in records if r.transport == "tcp"], sends):
        assert record.src == ("10.0.0.1:40000" if from_client else "10.0.0.2:1153")


def test_writer_times() -> None:
    def build(w: PcapWriter) -> None:
        conn = w.tcp_connection(CLIENT, SERVER, time=1_600_000_000.25)  # frames 1-3
        conn.send(READ_REQUEST)                                     # + 3 ms
        conn.send(READ_RESPONSE, from_client=False, time=1_600_000_001.5)
        w.udp(CLIENT, SERVER, READ_REQUEST)
    times = [r.time for r in read(capture(build))]
    assert times == [1_600_000_000.253, 1_600_000_001.5, 1_600_000_001.501]


def test_writer_tcp_numbers() -> None:
    data = capture(lambda w: one_exchange(w.tcp_connection(CLIENT, SERVER, client_isn=100,
                                                           server_isn=7000)))
    segments = [dpkt.ethernet.Ethernet(f).data.data for _, f in dpkt.pcap.Reader(io.BytesIO(data))]
    flags = dpkt.tcp
    assert [(s.seq, s.ack, s.flags) for s in segments] == [
        (100, 0, flags.TH_SYN),
        (7000, 101, flags.TH_SYN | flags.TH_ACK),
        (101, 7001, flags.TH_ACK),
        (101, 7001, flags.TH_PUSH | flags.TH_ACK),
        (7001, 101 + 31, flags.TH_PUSH | flags.TH_ACK),
        (132, 7001 + 47, flags.TH_FIN | flags.TH_ACK),
        (7048, 133, flags.TH_FIN | flags.TH_ACK),
        (133, 7049, flags.TH_ACK),
    ]


def one_exchange(conn: TcpConnection) -> None:
    conn.send(READ_REQUEST)
    conn.send(READ_RESPONSE, from_client=False)
    conn.close()


def test_writer_checksums_are_correct() -> None:
    data = sample_capture()
    for _, frame in dpkt.pcap.Reader(io.BytesIO(data)):
        ip = dpkt.ethernet.Ethernet(frame).data
        transport = ip.data
        stored = transport.sum
        transport.sum = 0
        if isinstance(ip, dpkt.ip.IP):
            stored_ip, ip.sum = ip.sum, 0
            rebuilt = dpkt.ip.IP(bytes(ip))
            assert rebuilt.sum == stored_ip
            assert rebuilt.data.sum == stored
        else:
            assert dpkt.ip6.IP6(bytes(ip)).data.sum == stored


def test_writer_rejects_mixed_ip_versions() -> None:
    with pytest.raises(ValueError, match="same IP version"):
        capture(lambda w: w.udp(("10.0.0.1", 1), ("::1", 1153), READ_REQUEST))


def test_writer_append_mode(tmp_path: Path) -> None:
    path = tmp_path / "trace.pcap"
    with PcapWriter.open(path, append=True, flush=True, start_time=1.0) as writer:
        writer.udp(CLIENT, SERVER, READ_REQUEST)
        # flush=True: the frame is in the file before close (a live trace can be read).
        assert [r.data for r in read_capture(path)] == [READ_REQUEST]
    with PcapWriter.open(path, append=True, start_time=2.0) as writer:
        writer.udp(SERVER, CLIENT, READ_RESPONSE)
    records = list(read_capture(path))
    assert [(r.frame, r.time, r.data) for r in records] == [
        (1, 1.0, READ_REQUEST), (2, 2.0, READ_RESPONSE)]


def test_writer_appends_in_the_files_own_byte_order(tmp_path: Path) -> None:
    path = tmp_path / "be.pcap"
    path.write_bytes(bytes(dpkt.pcap.FileHdr(snaplen=65535, linktype=1)))  # big-endian
    with PcapWriter.open(path, append=True, start_time=5.5) as writer:
        writer.udp(CLIENT, SERVER, EX8_REQUEST)
    assert [(r.time, r.data) for r in read_capture(path)] == [(5.5, EX8_REQUEST)]


def test_writer_refuses_to_append_to_another_link_type(tmp_path: Path) -> None:
    path = tmp_path / "raw.pcap"
    path.write_bytes(bytes(dpkt.pcap.LEFileHdr(snaplen=65535, linktype=101)))
    with pytest.raises(ConfigurationError, match="link type 101"):
        PcapWriter.open(path, append=True)
    path.write_bytes(b"not a pcap file at all!!")
    with pytest.raises(ConfigurationError, match="not a pcap"):
        PcapWriter.open(path, append=True)


def test_writer_open_without_append_truncates(tmp_path: Path) -> None:
    path = tmp_path / "new.pcap"
    path.write_bytes(b"old junk")
    with PcapWriter.open(path) as writer:
        writer.udp(CLIENT, SERVER, READ_REQUEST)
    assert [r.data for r in read_capture(path)] == [READ_REQUEST]


def test_writer_split_sizes() -> None:
    data = capture(lambda w: w.tcp_connection(CLIENT, SERVER).send(EX8_REQUEST,
                                                                   split=[1, 2, 3]))
    payloads = [dpkt.ethernet.Ethernet(f).data.data.data
                for _, f in dpkt.pcap.Reader(io.BytesIO(data))][3:]
    assert [len(p) for p in payloads] == [1, 2, 3, 75]
    with pytest.raises(ValueError):
        capture(lambda w: w.tcp_connection(CLIENT, SERVER).send(EX8_REQUEST, split=0))


# --------------------------------------------------------------------------- the record reader


def _classic(records: list[tuple[int, int, bytes]], magic: bytes) -> bytes:
    """A classic pcap in the byte order and time unit of ``magic``, written by hand."""
    order = "<" if magic[0] in (0xD4, 0x4D) else ">"
    out = magic + struct.pack(order + "HHiIII", 2, 4, 0, 0, 65535, 1)
    for sec, frac, frame in records:
        out += struct.pack(order + "IIII", sec, frac, len(frame), len(frame)) + frame
    return out


@pytest.mark.parametrize("magic", [b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4",
                                   b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"])
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999_999)),
                min_size=1, max_size=5))
def test_record_times_are_dpkts(magic: bytes, times: list[tuple[int, int]]) -> None:
    """Our classic pcap reader gives dpkt's times to the bit, in every byte order and unit,
    and the same frames, across the reader's block boundaries."""
    from c1222.transport import pcap

    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    frames = [(sec, frac if nano else frac % 1_000_000, bytes([i]) * (i * 700))
              for i, (sec, frac) in enumerate(times)]
    data = _classic(frames, magic)
    expected = [(float(ts), bytes(buf)) for ts, buf in dpkt.pcap.Reader(io.BytesIO(data))]
    old = pcap._READ_BLOCK
    pcap._READ_BLOCK = 1000  # records and headers straddle blocks
    try:
        _, records = pcap._open_container(io.BytesIO(data))
        assert list(records) == expected
    finally:
        pcap._READ_BLOCK = old


def test_record_cut_short_and_damaged() -> None:
    """A record header cut short raises Truncated; a frame cut short is what is there (as
    dpkt); a record claiming gigabytes is refused before anything is buffered."""
    from c1222.transport import pcap

    frame = dpkt.ethernet.Ethernet(data=b"\x00" * 30).pack()
    data = _classic([(1, 2, frame), (3, 4, frame)], b"\xd4\xc3\xb2\xa1")
    with pytest.raises(Truncated):
        list(pcap._open_container(io.BytesIO(data[:-len(frame) - 5]))[1])
    cut = list(pcap._open_container(io.BytesIO(data[:-5]))[1])
    assert [len(f) for _, f in cut] == [len(frame), len(frame) - 5]
    huge = data[:24] + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 0xFFFFFFF0) + b"\x00" * 64
    with pytest.raises(Truncated, match="damaged"):
        read(huge)
