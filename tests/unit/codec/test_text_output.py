"""codec.text: what decode's tree and JSON say about services, and what from_json refuses."""

from __future__ import annotations

import pytest

from c1222.codec import services as sv
from c1222.codec import text
from c1222.codec.ber import Uid
from c1222.errors import LocalProtocolError


def test_a_relative_uid_field_gets_its_absolute_form_in_json_and_in_the_label() -> None:
    request = sv.ResolveRequest(ap_title=Uid.parse(".123.8437"))
    value = text.service_to_json(request)
    assert value["ap_title"] == ".123.8437"
    assert value["ap_title_absolute"] == "2.16.124.113620.1.22.0.123.8437"
    assert text.describe_service(request) == (
        "service=resolve code=37 ap_title=.123.8437 (2.16.124.113620.1.22.0.123.8437)")
    absolute = text.service_to_json(sv.ResolveRequest(ap_title=Uid.parse("1.2.3")))
    assert "ap_title_absolute" not in absolute
    # the extra key is ignored on the way back
    assert text.service_from_json(value) == request


def test_describe_service_writes_nested_values_as_the_tree_does() -> None:
    write = sv.FullWriteRequest(table_id=6, table_data=sv.TableData(b"AB"))
    label = text.describe_service(write)
    assert label.startswith("service=full_write code=64 table_id=6 table_data={count=2 data=4142")
    assert "'" not in label  # no Python repr


@pytest.mark.parametrize("name", [["full_read"], {"a": 1}, 5, True])
def test_a_service_name_that_is_not_a_string_is_refused(name: object) -> None:
    for record in ({"service": name, "table_id": 0}, {"service": name, "response_code": "ok"}):
        with pytest.raises(LocalProtocolError, match="service: expected a service name"):
            text.service_from_json(record)


def test_a_field_out_of_its_wire_size_is_a_local_protocol_error() -> None:
    response = text.service_from_json({"response_code": "rstl", "max_size": -1})
    with pytest.raises(LocalProtocolError, match="does not fit"):
        response.encode()
    identify = text.service_from_json({"service": "identify", "response_code": "ok",
                                       "std": 256})
    with pytest.raises(LocalProtocolError, match="identify: a field does not fit"):
        identify.encode()


def test_field_types_written_out_match_the_classes() -> None:
    """text's table of Apdu's and Epsem's field types says what the classes declare (in a
    compiled build: what their annotations were erased from), and from_json reads it."""
    import typing

    from c1222.codec import text
    from c1222.codec.acse import Apdu
    from c1222.codec.epsem import Epsem
    from tests.unit.codec.field_types import as_declared, compiled

    for cls in (Apdu, Epsem):
        declared = typing.get_type_hints(cls)
        written = text._FIELD_TYPES[cls]
        assert written.keys() == declared.keys()
        for name, annotation in declared.items():
            assert annotation == written[name] or compiled(cls) and as_declared(
                annotation, written[name]), (cls, name)
        assert text._hints(cls) == written


def test_to_json_into_a_dict_adds_the_message_after_its_keys() -> None:
    from c1222.codec import samples

    apdu = samples.messages()[1]
    record = {"frame": 3}
    out = text.to_json(apdu, record)
    assert out is record
    assert list(out) == ["frame", *text.to_json(apdu)]
    assert {k: v for k, v in out.items() if k != "frame"} == text.to_json(apdu)
