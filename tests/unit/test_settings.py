"""The HTTP edge's settings: their defaults, and the values ``from_env`` refuses."""

from __future__ import annotations

import pytest

from cardkeep.config import SettingsError, from_env


def test_the_http_edge_defaults() -> None:
    settings = from_env({})
    assert settings.header_timeout == 10.0
    assert settings.keep_alive_timeout == 5.0
    assert settings.max_connections == 1000


def test_the_http_edge_settings_come_from_the_environment() -> None:
    settings = from_env(
        {
            "CARDKEEP_HEADER_TIMEOUT": "2.5",
            "CARDKEEP_KEEP_ALIVE_TIMEOUT": "1",
            "CARDKEEP_MAX_CONNECTIONS": "64",
        }
    )
    assert settings.header_timeout == 2.5
    assert settings.keep_alive_timeout == 1.0
    assert settings.max_connections == 64


@pytest.mark.parametrize("name", ["CARDKEEP_HEADER_TIMEOUT", "CARDKEEP_KEEP_ALIVE_TIMEOUT"])
@pytest.mark.parametrize("value", ["0", "-1", "86400", "nan", "inf", "ten"])
def test_a_timeout_must_be_a_positive_number_of_seconds(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        from_env({name: value})


@pytest.mark.parametrize("value", ["0", "-5", "100001", "1.5", "many", ""])
def test_the_connection_cap_must_be_a_whole_number_in_range(value: str) -> None:
    with pytest.raises(SettingsError, match="CARDKEEP_MAX_CONNECTIONS"):
        from_env({"CARDKEEP_MAX_CONNECTIONS": value})
