"""`c1222 decode CAPTURE` finds C12.22 on any port, as Wireshark's heuristic dissectors do,
and stays quiet about traffic that is not C12.22; `--port` forces a port as tshark's -d."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c1222.cli.main import cli
from c1222.codec import samples
from c1222.codec.acse import looks_like_apdu
from c1222.transport.pcap import PcapWriter, read_capture

C, S = ("10.0.0.1", 41000), ("10.0.0.2", 40123)  # a meter on a random port, as the demo's
HTTP_C, HTTP_S = ("10.0.0.1", 41001), ("10.0.0.3", 8080)
HTTP_REQUEST = b"GET /api/live HTTP/1.1\r\nHost: 10.0.0.3:8080\r\n\r\n"
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
# Starts as an APDU would (0x60, a good length) but holds no ACSE elements.
NOT_ACSE = bytes.fromhex("6006") + b"hello!"


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _records(result: Result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def _mixed_capture(path: Path) -> int:
    """C12.22 over TCP and UDP on port 40123 among HTTP and other traffic; its message count."""
    messages = [m.encode() for m in samples.messages()]
    with PcapWriter.open(path, start_time=1_700_000_000.0) as writer:
        http = writer.tcp_connection(HTTP_C, HTTP_S)
        conn = writer.tcp_connection(C, S)
        http.send(HTTP_REQUEST)
        for i, data in enumerate(messages):
            conn.send(data, from_client=i % 2 == 0)
            if i == 3:
                http.send(HTTP_RESPONSE, from_client=False)
        for i, data in enumerate(messages[:6]):
            writer.udp(C if i % 2 == 0 else S, S if i % 2 == 0 else C, data)
        writer.udp(("10.0.0.1", 5353), ("224.0.0.251", 5353), b"\x00\x00\x84\x00" + bytes(8))
        writer.udp(("10.0.0.1", 41002), ("10.0.0.4", 9999), NOT_ACSE)
        odd = writer.tcp_connection(("10.0.0.1", 41003), ("10.0.0.4", 7000))
        odd.send(NOT_ACSE + bytes(100))
        odd.send(b"\x60\x82\xff\xff" + bytes(50), from_client=False)
        conn.close()
        http.close()
    return len(messages) + 6


def test_c1222_on_a_random_port_is_found_without_flags(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pcap"
    count = _mixed_capture(path)
    result = _run("decode", "--json", str(path))
    assert result.exit_code == 0, result.output
    records = _records(result)
    assert len(records) == count
    assert all("error" not in r for r in records)
    assert {(r["src"], r["dst"]) for r in records} == {("10.0.0.1:41000", "10.0.0.2:40123"),
                                                      ("10.0.0.2:40123", "10.0.0.1:41000")}
    assert [r["transport"] for r in records].count("udp") == 6
    # the same messages as when the port is given, as with tshark -d tcp.port==40123,c1222
    forced = _records(_run("decode", "--json", "--port", "40123", str(path)))
    assert forced == records


def test_port_forces_c1222_even_on_what_is_not(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pcap"
    _mixed_capture(path)
    result = _run("decode", "--port", "8080", str(path))
    assert result.exit_code == 1 and "error:" in result.stdout
    assert "10.0.0.1:41000" not in result.stdout  # --port restricts: C12.22 elsewhere not shown


def test_a_conversation_found_to_be_c1222_reports_its_later_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.pcap"
    first, second = (m.encode() for m in samples.messages()[:2])
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection(C, S)
        conn.send(first)
        conn.send(second, from_client=False)
        conn.send(b"\x61\x00")  # this stream was C12.22: its loss of sync is news
    records = _records(_run("decode", "--json", str(path)))
    assert [r.get("error", {}).get("path") for r in records] == [None, None, "apdu"]


def test_the_reverse_direction_of_a_found_conversation_is_c1222_too(tmp_path: Path) -> None:
    path = tmp_path / "reply.pcap"
    request = samples.messages()[0].encode()
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection(C, S)
        conn.send(request)
        conn.send(b"\x60\x03\x01\x02\x03", from_client=False)  # a malformed reply: say so
    records = _records(_run("decode", "--json", str(path)))
    assert len(records) == 2 and "error" in records[1]


def test_the_registered_port_needs_no_heuristic(tmp_path: Path) -> None:
    path = tmp_path / "1153.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection(C, ("10.0.0.2", 1153))
        conn.send(NOT_ACSE)
    result = _run("decode", str(path))
    assert result.exit_code == 1 and "error:" in result.stdout


def test_looks_like_apdu() -> None:
    for message in samples.messages():
        assert looks_like_apdu(message.encode())
    for data in (NOT_ACSE, b"\x60\x00", b"\x60\x03\xa8\x01\x00",  # no user-information
                 b"\x60\x04\xbe\x00\xa8\x00",  # BE not last, and empty
                 b"\x60\x06\xa8\x00\xa8\x00\xbe\x00",  # repeated
                 b"\x60\x05\xa8\x00\xbe\x02\x28",  # BE claims more than there is
                 b"\x60\x06\xa8\x01\x00\xbe\x01\x81"):  # BE holds no EXTERNAL
        assert not looks_like_apdu(data), data.hex()


def test_the_reader_alone_follows_the_heuristic(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pcap"
    count = _mixed_capture(path)
    assert len(list(read_capture(path, heuristic=True))) == count
    assert list(read_capture(path)) == []  # default: port 1153 only, as before
    everything = list(read_capture(path, ports=None))  # every flow forced: errors for the rest
    assert sum(not r.ok for r in everything) >= 3


def test_a_large_first_apdu_is_judged_on_its_first_bytes(tmp_path: Path) -> None:
    from dataclasses import replace

    from c1222.codec.services import FullWriteRequest, TableData

    template = samples.messages()[12]
    big = replace(template, epsem=replace(template.epsem, services=(
        FullWriteRequest(table_id=6, table_data=TableData(bytes(5000))),))).encode()
    path = tmp_path / "big.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection(C, S)
        conn.send(big, split=700)  # the judgement comes before the APDU is whole
        conn.send(samples.messages()[13].encode(), from_client=False)
    records = _records(_run("decode", "--json", str(path)))
    assert [r["length"] for r in records] == [len(big), len(samples.messages()[13].encode())]
    assert records[0]["services"][0]["table_data"]["count"] == 5000


def test_a_tuple_judged_not_c1222_is_judged_again_for_a_new_connection(tmp_path: Path) -> None:
    path = tmp_path / "reuse.pcap"
    with PcapWriter.open(path) as writer:
        http = writer.tcp_connection(C, S, client_isn=1000)
        http.send(HTTP_REQUEST)
        http.send(b"more HTTP, after the verdict")
        http.close()
        conn = writer.tcp_connection(C, S, client_isn=900_000)
        conn.send(samples.messages()[0].encode())
    records = _records(_run("decode", "--json", str(path)))
    assert len(records) == 1 and records[0]["services"][0]["service"] == "identify"


_PAYLOADS = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda tail: b"\x60" + tail, st.binary(max_size=80)),
    st.builds(lambda m, cut: m[:cut], st.sampled_from([m.encode() for m in samples.messages()]),
              st.integers(0, 120)))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 3), st.booleans(), _PAYLOADS),
                max_size=12))
def test_hostile_traffic_on_other_ports_gives_records_never_a_traceback(
        tmp_path_factory, segments) -> None:
    """Random payloads, many starting with 0x60 or cut from real APDUs, on three random flows
    (TCP and UDP, both directions): the heuristic reader yields records or nothing."""
    path = tmp_path_factory.mktemp("hostile") / "h.pcap"
    with PcapWriter.open(path) as writer:
        conns = {n: writer.tcp_connection(("10.0.0.1", 41000 + n), ("10.0.0.2", 50000 + n))
                 for n in (1, 2, 3)}
        for udp, n, from_client, payload in segments:
            if udp:
                ends = (("10.0.0.1", 42000 + n), ("10.0.0.2", 52000 + n))
                writer.udp(*(ends if from_client else ends[::-1]), payload)
            elif payload:
                conns[n].send(payload, from_client=from_client)
    records = list(read_capture(path, heuristic=True))
    assert all(r.error is None or r.error.reason for r in records)
    result = CliRunner().invoke(cli, ["decode", str(path)])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_json_records_come_whole_and_in_order_across_writes(tmp_path: Path) -> None:
    # more messages than one write holds (cli/codec.py JSON_BATCH), serially and by workers
    from c1222.cli.codec import JSON_BATCH

    messages = [m.encode() for m in samples.messages()]
    count = 2 * JSON_BATCH + 3
    path = tmp_path / "many.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection(C, ("10.0.0.2", 1153))
        for i in range(count):
            conn.send(messages[i % len(messages)], from_client=i % 2 == 0)
    for jobs in ("1", "2"):
        records = _records(_run("decode", "--json", "--jobs", jobs, str(path)))
        assert len(records) == count
        frames = [r["frame"] for r in records]
        assert frames == sorted(frames) and all("error" not in r for r in records)
