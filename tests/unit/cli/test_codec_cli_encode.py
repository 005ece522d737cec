"""`c1222 encode`: every input line gives a message or `line N: reason`, and the run goes on;
a hypothesis search over any JSON value (and over records with one field spoiled) finds no
other outcome."""

from __future__ import annotations

import json

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c1222.cli.codec import encode_record
from c1222.cli.main import cli
from c1222.codec import samples, text
from c1222.crypto.keys import KeyTable
from c1222.errors import C1222Error

KEY = "2:01020304050607080102030405060708"
RECORDS = [text.to_json(m) for m in samples.messages()]
GOOD = json.dumps(RECORDS[2])  # full_read of table 0
# The records of the issue, each once a traceback.
HOSTILE = ["5", "null", '{"error": 1}', '{"error": {"reason": "apdu.length"}}',
           json.dumps({**RECORDS[2], "services": [{"service": ["full_read"]}]}),
           json.dumps({**RECORDS[2], "services": [{"service": {"a": 1}, "table_id": 0}]}),
           json.dumps({**RECORDS[3], "services": [{"service": [1], "response_code": "ok"}]}),
           json.dumps({**RECORDS[3], "services": [{"response_code": "rstl", "max_size": -1}]}),
           json.dumps({**RECORDS[1], "services": [{**RECORDS[1]["services"][0], "std": 256}]}),
           '{"response_code": "rstl", "max_size": -1}',
           json.dumps({**RECORDS[2], "security_mode": 2}),
           json.dumps({**RECORDS[2], "security_mode": 1}),
           "[", "1" * 5000, '"text"', "[]"]


def test_every_hostile_line_is_reported_and_the_run_goes_on() -> None:
    lines = [GOOD, *HOSTILE, GOOD]
    result = CliRunner().invoke(cli, ["encode"], input="\n".join(lines) + "\n",
                                catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stdout.split() == [samples.messages()[2].encode().hex()] * 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [int(line.split(":")[0][5:]) for line in errors] == list(range(2, len(lines)))
    assert f"{len(HOSTILE)} line(s) did not encode" in result.stderr
    assert "Traceback" not in result.output


def test_the_reasons_say_what_is_wrong_in_the_user_s_terms() -> None:
    reasons = {}
    for line in HOSTILE:
        try:
            encode_record(line)
        except C1222Error as exc:
            reasons[line] = str(exc)
    assert reasons[HOSTILE[0]] == "a message is a JSON object"
    assert "did not decode (apdu.length)" in reasons[HOSTILE[3]]
    assert reasons[HOSTILE[4]] == "service: expected a service name"
    assert "does not fit" in reasons[HOSTILE[7]] and "does not fit" in reasons[HOSTILE[8]]
    mode2, mode1 = reasons[HOSTILE[10]], reasons[HOSTILE[11]]
    assert "--key" in mode2 and "ciphertext" in mode2 and "crypto/policy" not in mode2
    assert "--key" in mode1 and "MAC" in mode1 and "crypto/policy" not in mode1
    assert reasons["["].startswith("not JSON")


_SCALARS = (st.none() | st.booleans() | st.integers(-(2**40), 2**40)
            | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6)
            | st.sampled_from(["", "00", "zz", "ok", "rstl", ".1.2", "1.2.3", "read", "0" * 40]))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
_FIELDS = ["service", "response_code", "max_size", "data", "table_data", "services",
           "security_mode", "ciphertext", "mac", "key_id", "iv"]


@st.composite
def _spoiled_records(draw: st.DrawFn) -> object:
    """A real record with one field (of the message, a service or its table data) replaced."""
    record = json.loads(json.dumps(draw(st.sampled_from(RECORDS))))
    target = record
    if record["services"] and draw(st.booleans()):
        target = draw(st.sampled_from(record["services"]))
        if "table_data" in target and draw(st.booleans()):
            target = target["table_data"]
    target[draw(st.sampled_from(sorted(target) + _FIELDS))] = draw(_JSON)
    return record


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(_JSON, _spoiled_records()), st.booleans())
def test_any_json_value_gives_bytes_or_a_c1222_error(value: object, with_key: bool) -> None:
    from c1222.cli.codec import _securer

    secure = _securer(KeyTable.from_cli([KEY]), None, None, "01020304") if with_key else None
    try:
        data = encode_record(json.dumps(value), secure)
    except C1222Error:
        return
    assert isinstance(data, bytes) and data[0] == 0x60
