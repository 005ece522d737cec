"""Tables as values through the head-end's API, the write form, events, alarms and the
filtered, exported message log; against a real head-end and a real meter (the System of
test_web.py)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from c1222.codec.services import FullWriteRequest
from tests.interop.tshark import tshark_fields
from tests.unit.headend.test_web import METER, System, service

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with System(tmp_path_factory.mktemp("tables")) as s:
        s.start_meter(speed=60)
        s.wait_registered(METER)
        yield s


@pytest.fixture
def client(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.url, timeout=30) as c:
        yield c


def fields(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in table["fields"]}


def writes_sent(system: System) -> int:
    """Writes the head-end has sent (from its message log), to prove a 422 sent none."""
    assert system.headend is not None

    async def count() -> int:
        await system.headend._flush_log()
        rows = await system.headend.storage.messages(METER, limit=1000)
        return sum(1 for m in rows if m.direction == "out" and m.json and any(
            s.get("service") in ("full_write", "partial_write_offset")
            for s in json.loads(m.json)["services"]))

    return system.call(count())


# ------------------------------------------------------------------------------ reads


def test_a_read_of_table_23_shows_its_registers_in_kwh(client: httpx.Client) -> None:
    x = service(client, "read", {"table": 23}).json()
    assert x["response_codes"] == ["ok", "ok"]
    (table,) = x["tables"]
    assert table["name"] == "CURRENT_REG_DATA_TBL" and table["error"] is None
    reg = fields(table)["tot_data_block.summations[0]"]
    assert reg["text"].endswith(" kWh") and reg["unit"] == "Wh"
    assert reg["hex"] and x["response"]["hex"].find(reg["hex"]) > 0


def test_present_values_clock_and_table_0_are_named(client: httpx.Client) -> None:
    present = fields(service(client, "read", {"table": 28}).json()["tables"][0])
    volts = [f for f in present.values() if f["unit"] == "V"]
    assert volts and 200 < volts[0]["value_scaled"] < 260 and volts[0]["text"].endswith(" V")
    clock = fields(service(client, "read", {"table": 52}).json()["tables"][0])
    assert clock["clock_calendar"]["unit"] == "date/time"
    gen = fields(client.get(f"/api/nodes/{METER}/tables/0").json()["table"])
    assert "CURRENT_REG_DATA_TBL" in gen["std_tbls_used"]["text"]


def test_a_partial_read_decodes_what_it_covers(client: httpx.Client) -> None:
    body = client.get(f"/api/nodes/{METER}/tables/28", params={"offset": 12, "count": 6})
    assert body.status_code == 200, body.text
    table = body.json()["table"]
    assert [f["path"] for f in table["fields"]] == ["present_value[2]"]
    assert "partial" in table["note"]
    assert client.get(f"/api/nodes/{METER}/tables/28",
                      params={"offset": 12}).status_code == 422


def test_unknown_tables_and_refusals(client: httpx.Client) -> None:
    x = service(client, "read", {"table": 99}).json()
    assert x["response_codes"] == ["ok", "sns"] and x["tables"] == []
    mt = client.get(f"/api/nodes/{METER}/tables/2050").json()["table"]  # MT2 has a layout
    assert mt["error"] is None and mt["fields"]


def test_the_message_detail_decodes_a_logged_read(client: httpx.Client,
                                                  system: System) -> None:
    service(client, "read", {"table": 23})
    system.call(system.headend._flush_log())
    log = client.get("/api/messages", params={"ap_title": METER, "service": "read",
                                              "limit": 5}).json()
    response = next(m for m in log if m["direction"] == "in")
    detail = client.get(f"/api/messages/{response['id']}").json()
    assert detail["tables"] and detail["tables"][0]["table"] == 23
    assert fields(detail["tables"][0])["tot_data_block.summations[0]"]["text"].endswith("kWh")


# ------------------------------------------------------------------------------ writes


def test_the_write_form_changes_one_field_with_an_offset_write(client: httpx.Client) -> None:
    # Table 6 UTIL_INFO_TBL: the head-end may write it; one field of 20 of its 230 bytes
    r = client.put(f"/api/nodes/{METER}/tables/6",
                   json={"values": {"customer_id": "CUST-0042"}})
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["exchange"]["response_codes"] == ["ok", "ok"]
    assert body["written"]["full"] is False and body["written"]["count"] >= 1
    assert any("partial_write_offset" in row["label"]
               for row in body["exchange"]["request"]["tree"])
    assert body["written"]["offset"] >= 120 and body["written"]["count"] <= 20
    back = fields(client.get(f"/api/nodes/{METER}/tables/6").json()["table"])
    assert back["customer_id"]["value"].rstrip() == "CUST-0042"
    assert back["owner_name"]["value"] == fields(body["table"])["owner_name"]["value"]


@pytest.mark.parametrize("body, where", [
    ({"values": {}}, "values"),
    ({"values": {"notice_id": ""}}, "notice_id"),
    ({"values": {"notice_id": "three"}}, "notice_id"),
    ({"values": {"notice_id": None}}, "notice_id"),
    ({"values": {"no_such_field": 1}}, "no_such_field"),
    ({"values": {"notice_id": 10 ** 30}}, "notice_id"),
    ({"values": {"notice_id": 3}, "extra": 1}, "extra"),
    ({}, "values"),
    (None, None),
])
def test_empty_or_malformed_fields_are_422_and_never_a_write(
        client: httpx.Client, system: System, body: Any, where: str | None) -> None:
    before = writes_sent(system)
    r = client.put(f"/api/nodes/{METER}/tables/2050", json=body)
    assert r.status_code == 422, r.text
    if where is not None:
        assert where in json.dumps(r.json()["detail"])
    assert writes_sent(system) == before


def test_a_write_that_changes_nothing_is_422(client: httpx.Client, system: System) -> None:
    current = fields(client.get(f"/api/nodes/{METER}/tables/6").json()["table"])
    before = writes_sent(system)
    r = client.put(f"/api/nodes/{METER}/tables/6",
                   json={"values": {"owner_name": current["owner_name"]["value"]}})
    assert r.status_code == 422 and "nothing to write" in r.text
    assert writes_sent(system) == before


def test_the_write_service_with_an_empty_table_field_is_422_not_a_write_of_table_0(
        client: httpx.Client, system: System) -> None:
    # The console sends what its fields hold; an empty table field is left out (or sent as
    # an empty string, or null): each is a 422 and nothing is sent to the meter.
    before = writes_sent(system)
    for params in ({"data": "00"}, {"table": "", "data": "00"}, {"table": None, "data": "00"},
                   {"table": 0, "data": ""}, {"table": 0}):
        r = service(client, "write", params)
        assert r.status_code == 422, (params, r.text)
    assert writes_sent(system) == before
    assert FullWriteRequest  # the request that must not have been sent


def test_table_routes_refuse_bad_input(client: httpx.Client) -> None:
    assert client.get(f"/api/nodes/{METER}/tables/70000").status_code == 422
    assert client.get(f"/api/nodes/{METER}/tables/-1").status_code == 422
    assert client.get(f"/api/nodes/{METER}/tables/23",
                      params={"offset": 2**40, "count": 1}).status_code == 422
    assert client.get("/api/nodes/nope/tables/0").status_code == 404
    assert client.get("/api/nodes/2.16.124.113620.1.22.0.123.1/tables/0").status_code == 404
    r = client.put(f"/api/nodes/{METER}/tables/99", json={"values": {"x": 1}})
    assert r.status_code == 422 and "no layout" in r.text
    many = {f"f{i}": 1 for i in range(2000)}
    assert client.put(f"/api/nodes/{METER}/tables/2050",
                      json={"values": many}).status_code == 422


# ------------------------------------------------------------------------------ views


def test_events_are_named_and_alarms_list_failing_meters(client: httpx.Client,
                                                         system: System) -> None:
    assert client.post(f"/api/nodes/{METER}/collect", params={"logs": True}).status_code == 200
    events = client.get(f"/api/nodes/{METER}/events").json()
    assert events and events[0]["name"] and "time" in events[0]
    assert any(e["name"] == "primary power up" for e in events)
    assert client.get(f"/api/nodes/{METER}/events", params={"limit": 10**9}).status_code == 422
    assert client.get("/api/alarms").json() == []
    assert system.headend is not None
    system.headend.status(METER).failed(time.time(), "TransportError: no response")
    try:
        (alarm,) = client.get("/api/alarms").json()
        assert alarm["ap_title"] == METER and "no response" in alarm["reason"]
    finally:
        system.headend.status(METER).succeeded(time.time())


# ------------------------------------------------------------------------------ message log


def test_the_message_log_filters_by_service_code_mode_and_time(client: httpx.Client,
                                                               system: System) -> None:
    service(client, "read", {"table": 99})  # answered sns
    service(client, "identify")
    system.call(system.headend._flush_log())
    get = lambda **p: client.get("/api/messages", params={"limit": 50, **p})  # noqa: E731
    sns = get(response_code="sns").json()
    assert sns and all("sns" in m["summary"] for m in sns)
    ident = get(service="identify").json()
    assert ident and all("identify" in m["summary"] or m["direction"] == "in" for m in ident)
    assert get(security_mode=0).json()
    assert get(security_mode=2).json() == []
    assert get(since="2999-01-01T00:00:00Z").json() == []
    assert get(until="2000-01-01T00:00:00Z").json() == []
    recent = get(since=(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10))
                 .isoformat()).json()
    assert recent
    assert get(ap_title=METER, service="read").headers["X-C1222-Scan-Complete"] == "true"


@pytest.mark.parametrize("params", [
    {"service": "x" * 100}, {"service": "READ;drop"}, {"response_code": "o k"},
    {"security_mode": 3}, {"security_mode": 10**30}, {"limit": 10**9}, {"since": "yesterday"},
    {"since": "2020-01-02T00:00:00Z", "until": "2020-01-01T00:00:00Z"},
    {"since": "0001-01-01T00:00:00+01:00"}, {"before_id": 2**70},
])
def test_huge_or_bad_filter_values_are_422(client: httpx.Client, params: dict) -> None:
    assert client.get("/api/messages", params=params).status_code == 422
    if "before_id" not in params:  # the export takes no page
        assert client.get("/api/messages/export", params=params).status_code == 422


def test_bad_export_requests(client: httpx.Client) -> None:
    assert client.get("/api/messages/export", params={"format": "xml"}).status_code == 422
    assert client.get("/api/messages/export", params={"limit": 0}).status_code == 422
    assert client.get("/api/messages/export", params={"limit": 10**6}).status_code == 422
    assert client.get("/api/messages/export", params={"ap_title": "x"}).status_code == 404
    empty = client.get("/api/messages/export",
                       params={"format": "json", "since": "2999-01-01T00:00:00Z"})
    assert empty.status_code == 200 and empty.json() == []


def test_the_json_export_holds_the_filtered_messages(client: httpx.Client,
                                                     system: System) -> None:
    system.call(system.headend._flush_log())
    r = client.get("/api/messages/export", params={"format": "json", "service": "read",
                                                   "limit": 20})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    rows = r.json()
    assert rows and [m["id"] for m in rows] == sorted(m["id"] for m in rows)  # oldest first
    assert all(m["json"]["services"] for m in rows)


def test_the_pcap_export_opens_in_tshark_with_every_message(client: httpx.Client,
                                                            system: System,
                                                            tmp_path: Path) -> None:
    system.call(system.headend._flush_log())
    r = client.get("/api/messages/export", params={"format": "pcap", "limit": 40})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.tcpdump.pcap"
    count = int(r.headers["X-C1222-Messages"])
    assert count == 40
    path = tmp_path / "log.pcap"
    path.write_bytes(r.content)
    port = system.address[1]
    frames = tshark_fields(path, ["c1222.cmd", "c1222.err"], display_filter="c1222",
                           extra_options=["-d", f"tcp.port=={port},c1222",
                                          "-d", f"udp.port=={port},c1222"])
    assert len(frames) == count
    # requests carry a command, responses a response code, as the log has them
    log = client.get("/api/messages/export", params={"format": "json", "limit": 40}).json()
    assert sum(1 for f in frames if f.get("c1222.cmd")) >= sum(
        1 for m in log if m["direction"] == "out")


# ------------------------------------------------------------------------------ a lying meter


def test_malformed_tables_from_a_meter_are_shown_as_clean_errors(tmp_path: Path) -> None:
    """A meter double serves a short Table 23, a Table 21 that claims 255 summations, and
    garbage for Table 0: every Read answers 200 with the hex and the reason it does not
    decode, never a 500; the write form refuses to write a table that does not decode."""
    from c1222.headend.web import create_app
    from tests.unit.headend.test_collector import TITLE, run

    seen: dict[str, Any] = {}

    async def body(headend: Any, meter: Any) -> None:
        app = create_app(headend)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://h",
                                     timeout=30) as c:
            async def read(n: int) -> dict[str, Any]:
                r = await c.post(f"/api/nodes/{TITLE}/services/read", json={"table": n})
                assert r.status_code == 200, r.text
                return r.json()

            meter.lying.fake[23] = b"\x01\x02\x03"
            seen["short"] = (await read(23))["tables"][0]
            del meter.lying.fake[23]
            headend._context.clear()
            regs = bytearray(meter.store.get_bytes(21))
            regs[3] = 255  # NBR_SUMMATIONS
            meter.lying.fake[21] = bytes(regs)
            seen["dims"] = (await read(23))["tables"][0]
            r = await c.put(f"/api/nodes/{TITLE}/tables/23",
                            json={"values": {"tot_data_block.summations[0]": 1}})
            seen["put"] = (r.status_code, r.text)
            del meter.lying.fake[21]
            headend._context.clear()
            meter.lying.fake[0] = b"\xff" * 5
            seen["gen"] = (await read(23))["tables"][0]
            seen["gen0"] = (await read(0))["tables"][0]

    errors = run(tmp_path, body)
    assert errors == []
    assert "Truncated" in seen["short"]["error"] and seen["short"]["fields"] == []
    assert seen["dims"]["error"] and seen["dims"]["fields"] == []
    assert seen["put"][0] == 409 and "does not decode" in seen["put"][1]
    assert seen["gen"]["error"] and seen["gen0"]["error"].startswith("Truncated")


def test_a_large_table_is_described_in_the_decoder_process(client: httpx.Client,
                                                          system: System) -> None:
    from c1222.headend import tables_api

    assert system.headend is not None
    calls: list[Any] = []
    real = system.headend._decode

    async def spy(fn: Any, *args: Any) -> Any:
        calls.append(fn.__name__)
        return await real(fn, *args)

    system.headend._decode = spy  # type: ignore[method-assign]
    try:
        small = service(client, "read", {"table": 28}).json()["tables"][0]  # 30 bytes
        assert calls == []
        big = service(client, "read", {"table": 74}).json()["tables"][0]  # 1211 bytes
        # a part of the load profile is decoded inside the whole table (39 kB)
        part = service(client, "read", {"table": 64, "offset": 0, "count": 100}
                       ).json()["tables"][0]
    finally:
        del system.headend._decode
    assert small["count"] <= tables_api.OFF_LOOP_BYTES < big["count"]
    assert calls == ["describe_table", "describe_table"]
    assert part["error"] is None and part["fields"]
    assert big["error"] is None and big["fields"][0]["path"]


@pytest.mark.parametrize("request_json, response_json", [
    (None, None), ({}, {}), ({"services": "x"}, None), ({"services": [None, 3, "x"]}, None),
    ({"services": [{"service": None, "table_id": 1}]}, None),
    ({"services": [{"service": "full_write", "table_id": 1, "table_data": {"data": "zz"}}]},
     None),
    ({"services": [{"service": "partial_read_offset", "table_id": 1, "offset": "9"}]},
     {"services": [{"response_code": "ok", "table_data": {"data": "00"}}]}),
    ({"services": [{"service": "full_read", "table_id": True}]},
     {"services": [{"response_code": "ok", "table_data": {"data": "00"}}]}),
])
def test_logged_json_that_is_not_what_the_head_end_writes_gives_no_tables(
        request_json: Any, response_json: Any) -> None:
    from c1222.headend.tables_api import tables_of

    assert tables_of(request_json, response_json) == []
