"""Settings (the HTTP edge, the card-testing limits): their defaults, and the values ``from_env``
refuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from cardkeep.bootstrap import _policy
from cardkeep.config import KEY_ENV, KEY_FIELDS, Settings, SettingsError, from_env
from cardkeep.serve import hop_in_clear_beyond_host


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


def test_the_card_testing_defaults_and_the_policy_they_make() -> None:
    settings = from_env({})
    assert settings.limit_window == 600.0
    assert settings.limit_failed_per_account == 1000
    assert settings.limit_failed_per_secret == 5
    assert settings.limit_cards_per_secret == 3
    assert settings.limit_approved_per_account == 0  # approved entries: no limit
    policy = _policy(
        from_env(
            {
                "CARDKEEP_LIMIT_WINDOW": "60",
                "CARDKEEP_LIMIT_FAILED_PER_ACCOUNT": "7",
                "CARDKEEP_LIMIT_FAILED_PER_SECRET": "0",
                "CARDKEEP_LIMIT_CARDS_PER_SECRET": "2",
                "CARDKEEP_LIMIT_APPROVED_PER_ACCOUNT": "500",
            }
        )
    )
    assert policy.card_window == timedelta(seconds=60)
    assert (
        policy.card_failed_per_account,
        policy.card_failed_per_secret,
        policy.card_cards_per_secret,
        policy.card_approved_per_account,
    ) == (7, 0, 2, 500)


@pytest.mark.parametrize(
    "name",
    [
        "CARDKEEP_LIMIT_FAILED_PER_ACCOUNT",
        "CARDKEEP_LIMIT_FAILED_PER_SECRET",
        "CARDKEEP_LIMIT_CARDS_PER_SECRET",
        "CARDKEEP_LIMIT_APPROVED_PER_ACCOUNT",
    ],
)
@pytest.mark.parametrize("value", ["-1", "1.5", "ten", "", "1000001", "٣"])
def test_a_card_limit_must_be_a_whole_number_in_range(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name} must be a whole number from 0"):
        from_env({name: value})


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "86401", "soon", ""])
def test_the_card_testing_window_must_be_whole_seconds_in_range(value: str) -> None:
    with pytest.raises(SettingsError, match="CARDKEEP_LIMIT_WINDOW"):
        from_env({"CARDKEEP_LIMIT_WINDOW": value})


def test_the_fingerprint_key_is_a_secret_setting() -> None:
    settings = from_env({"CARDKEEP_FINGERPRINT_KEY": "c2VjcmV0"})
    assert settings.fingerprint_key == "c2VjcmV0"
    assert "c2VjcmV0" not in repr(settings)


SECRET = "an-internal-secret-of-enough-length-0123456789"


def test_the_internal_hop_settings_and_what_an_api_worker_is_given(tmp_path: Path) -> None:
    settings = from_env(
        {
            "CARDKEEP_INTERNAL_SECRET": SECRET,
            "CARDKEEP_INTERNAL_URL": "http://10.0.0.5:8002/",
            "CARDKEEP_INTERNAL_HOST": "10.0.0.5",
            "CARDKEEP_KEYRING": str(tmp_path / "keyring.json"),
            "CARDKEEP_VAULT_KEY": "dmF1bHQ=",
            "CARDKEEP_FINGERPRINT_KEY": "ZmluZ2VycHJpbnQ=",
        }
    )
    assert (settings.internal_secret, settings.internal_url) == (SECRET, "http://10.0.0.5:8002")
    assert settings.internal_host == "10.0.0.5"
    assert SECRET not in repr(settings)
    worker = settings.without_keys()
    assert (worker.keyring, worker.keyring_json, worker.vault_key, worker.fingerprint_key) == (
        None,
        None,
        None,
        None,
    )
    assert str(tmp_path) not in repr(worker)
    assert worker.internal_secret == SECRET  # what it needs to reach the PCI process
    assert {f for f in KEY_FIELDS if getattr(settings, f)} == {
        "keyring",
        "vault_key",
        "fingerprint_key",
    }
    assert from_env({"CARDKEEP_KEYRING_JSON": "{}"}).without_keys().keyring_json is None


def test_the_internal_secret_from_a_file_only_its_owner_can_read(tmp_path: Path) -> None:
    path = tmp_path / "internal.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    assert from_env({"CARDKEEP_INTERNAL_SECRET_FILE": str(path)}).internal_secret == SECRET
    path.chmod(0o640)
    with pytest.raises(SettingsError, match="readable by group or others"):
        from_env({"CARDKEEP_INTERNAL_SECRET_FILE": str(path)})
    with pytest.raises(SettingsError, match="cannot read"):
        from_env({"CARDKEEP_INTERNAL_SECRET_FILE": str(tmp_path / "missing")})
    short = tmp_path / "short.secret"
    short.write_text("short")
    short.chmod(0o600)
    with pytest.raises(SettingsError, match="at least 32"):
        from_env({"CARDKEEP_INTERNAL_SECRET_FILE": str(short)})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CARDKEEP_INTERNAL_SECRET": "too-short"}, "at least 32"),
        ({"CARDKEEP_INTERNAL_SECRET": "x" * 31 + "\u00e9"}, "printable ASCII"),
        (
            {"CARDKEEP_INTERNAL_SECRET": SECRET, "CARDKEEP_INTERNAL_SECRET_FILE": "/x"},
            "not both",
        ),
        ({"CARDKEEP_INTERNAL_URL": "10.0.0.5:8002"}, "http:// or https://"),
    ],
)
def test_internal_hop_settings_that_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        from_env(env)


def test_tls_on_the_internal_hop_and_what_an_api_worker_is_given(tmp_path: Path) -> None:
    """The certificate and key both or neither, the key its owner's alone, each file there; an
    API worker keeps the certificate and the CA file (public) but never the key's path."""
    cert, key, ca = (tmp_path / name for name in ("internal.crt", "internal.key", "ca.crt"))
    for path in (cert, key, ca):
        path.write_text("PEM\n")
    key.chmod(0o600)
    env = {
        "CARDKEEP_INTERNAL_TLS_CERT": str(cert),
        "CARDKEEP_INTERNAL_TLS_KEY": str(key),
        "CARDKEEP_INTERNAL_CA_FILE": str(ca),
    }
    settings = from_env(env)
    assert (settings.internal_tls_cert, settings.internal_tls_key) == (cert, key)
    assert settings.internal_ca_file == ca
    worker = settings.without_keys()
    assert worker.internal_tls_key is None
    assert (worker.internal_tls_cert, worker.internal_ca_file) == (cert, ca)
    assert "CARDKEEP_INTERNAL_TLS_KEY" in KEY_ENV
    for dropped in ("CARDKEEP_INTERNAL_TLS_CERT", "CARDKEEP_INTERNAL_TLS_KEY"):
        with pytest.raises(SettingsError, match=r"both .* or neither"):
            from_env({k: v for k, v in env.items() if k != dropped})
    for name in env:
        with pytest.raises(SettingsError, match=f"{name}: no such file"):
            from_env({**env, name: str(tmp_path / "missing.pem")})
    key.chmod(0o640)
    with pytest.raises(SettingsError, match=r"CARDKEEP_INTERNAL_TLS_KEY: .* readable by group"):
        from_env(env)


def test_the_pci_process_warns_of_a_hop_in_clear_beyond_this_host(tmp_path: Path) -> None:
    cert = tmp_path / "internal.crt"
    for host, warned in (
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("localhost", False),
        ("0.0.0.0", True),
        ("10.0.0.5", True),
        ("pci.internal", True),
    ):
        settings = Settings(internal_host=host)
        assert hop_in_clear_beyond_host(settings) is warned, host
        assert not hop_in_clear_beyond_host(replace(settings, internal_tls_cert=cert))
