"""The meter's relay settings (meter/config.py; docs/network.md)."""

from __future__ import annotations

import pytest

from c1222.errors import ConfigurationError
from c1222.meter.config import from_mapping


def test_relay_is_an_address_and_request_title_a_boolean() -> None:
    config = from_mapping({"relay": "127.0.0.1:1160", "request_title": True})
    assert config.relay == ("127.0.0.1", 1160) and config.request_title


@pytest.mark.parametrize(("data", "words"), [
    ({"relay": "x:y"}, "relay"),
    ({"relay": "127.0.0.1:1", "headend": "127.0.0.1:2"}, "one or the other"),
    ({"request_title": True}, "only with relay"),
    ({"relay": "127.0.0.1:1", "request_title": "yes"}, "true or false"),
])
def test_bad_relay_settings_are_named(data: dict, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        from_mapping(data)
