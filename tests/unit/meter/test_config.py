"""The meter's TOML profile and its state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c1222.errors import ConfigurationError
from c1222.meter import state
from c1222.meter.config import METER_AP_TITLE, from_mapping, load_profile

PROFILE = """
ap_title = "2.16.124.113620.1.22.0.123.9001"
serial_number = "00009001"
listen = "127.0.0.1:0"
headend = "127.0.0.1:1154"
ihd = "[::1]:1155"
speed = 60
security_mode = 2
keys = ["7:000102030405060708090A0B0C0D0E0F"]
load = { type = "heater", step1 = 1000, step2 = 2000 }

[[users]]
user_id = 3
password = "SECRET"
groups = ["read", "write"]
"""


def test_a_full_profile(tmp_path: Path) -> None:
    path = tmp_path / "meter.toml"
    path.write_text(PROFILE)
    config = from_mapping(load_profile(path))
    assert config.ap_title.endswith(".9001") and config.listen == ("127.0.0.1", 0)
    assert config.ihd == ("::1", 1155) and config.speed == 60.0
    assert config.key_id == 7  # the only key is the one sent with
    assert config.users is not None and config.users[0].user_id == 3
    assert "SECRET" not in repr(config.users)


def test_defaults_are_the_standards_example_titles() -> None:
    config = from_mapping({})
    assert config.ap_title == METER_AP_TITLE and config.headend is None
    assert config.load["type"] == "household"


@pytest.mark.parametrize("data,field", [
    ({"ap_title": "not a title"}, "ap_title"),
    ({"speed": "fast"}, "speed"),
    ({"speed": 0}, "speed"),
    ({"security_mode": 3}, "security_mode"),
    ({"security_mode": 1}, "security_mode"),  # secured without a key
    ({"key_id": 9, "keys": ["2:" + "00" * 16]}, "key_id"),
    ({"keys": ["2:zz"]}, "keys"),
    ({"listen": "host:port"}, "listen"),
    ({"listen": 1153}, "listen"),
    ({"registration_period": 0}, "registration_period"),
    ({"load_profile_minutes": 7}, "load_profile_minutes"),
    ({"front_end": "analog"}, "front_end"),
    ({"load": "household"}, "load"),
    ({"users": [{"user_id": 1, "password": "x", "groups": ["root"]}]}, "users[0].groups"),
    ({"users": [{"password": "x"}]}, "users[0]"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_field_is_named(data: dict, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        from_mapping(data)
    assert str(info.value).startswith(field)


def test_unreadable_or_broken_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="missing.toml"):
        load_profile(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("speed = = 2")
    with pytest.raises(ConfigurationError, match="broken.toml"):
        load_profile(broken)


def test_state_is_replaced_atomically_and_read_back(tmp_path: Path) -> None:
    assert state.load(tmp_path) is None
    state.save(tmp_path, {"sim_time": 5, "tables": {"23": "00ff"}})
    state.save(tmp_path, {"sim_time": 6, "tables": {"23": "0100"}})
    loaded = state.load(tmp_path)
    assert loaded is not None and loaded["sim_time"] == 6
    assert not (tmp_path / (state.STATE_FILE + ".tmp")).exists()


def test_a_foreign_state_file_is_refused_not_discarded(tmp_path: Path) -> None:
    path = tmp_path / state.STATE_FILE
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not a meter state file"):
        state.load(tmp_path)
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(ConfigurationError, match="unknown state version"):
        state.load(tmp_path)
    assert path.exists()
