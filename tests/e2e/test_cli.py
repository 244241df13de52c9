"""The ``cardkeep`` command as a user runs it: accounts, migrate, sweep, and clear refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from cardkeep.storage.migrations import load as load_migrations
from tests.e2e.harness import Merchant, run_server

# Every listener of ``serve`` on a port the kernel picks.
FREE_PORTS = ("--api-port", "0", "--pci-port", "0", "--internal-port", "0")


def cardkeep(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardkeep", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=None if env is None else {**os.environ, **env},
    )


def test_accounts_create_prints_only_the_key_and_stores_its_hash(tmp_path: Path) -> None:
    sandbox = cardkeep("accounts", "create", "Cafe", "--data-dir", str(tmp_path))
    assert sandbox.returncode == 0, sandbox.stderr
    assert re.fullmatch(r"sk_sandbox_[A-Za-z0-9_-]{43}\n", sandbox.stdout)
    assert "created sandbox account acc_" in sandbox.stderr
    assert re.search(r"^key id key_[A-Za-z0-9_-]{22}$", sandbox.stderr, re.MULTILINE)
    prod = cardkeep("accounts", "create", "Platform", "--mode", "prod", "--data-dir", str(tmp_path))
    assert re.fullmatch(r"sk_prod_[A-Za-z0-9_-]{43}\n", prod.stdout)
    listing = cardkeep("accounts", "list", "--data-dir", str(tmp_path))
    assert "\tsandbox\tCafe" in listing.stdout
    assert "\tprod\tPlatform" in listing.stdout
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("cardkeep.db*"))
    for key in (sandbox.stdout.strip(), prod.stdout.strip()):
        assert key.encode() not in raw
        assert key.split("_", 2)[2].encode() not in raw


def test_migrate_is_idempotent_and_sweep_runs(tmp_path: Path) -> None:
    first = cardkeep("migrate", "--data-dir", str(tmp_path))
    assert first.returncode == 0
    versions = [m.version for m in load_migrations("sqlite")]
    assert f"applied migrations {versions}" in first.stderr
    again = cardkeep("migrate", "--data-dir", str(tmp_path))
    assert "up to date" in again.stderr
    swept = cardkeep("sweep", "--data-dir", str(tmp_path))
    assert swept.returncode == 0
    assert "recovered charges: 0" in swept.stderr


def test_unreachable_or_unsupported_database_urls_are_refused_clearly(tmp_path: Path) -> None:
    missing = "postgresql://postgres@127.0.0.1:5432/cardkeep_no_such_database"
    r = cardkeep("migrate", "--database-url", missing)
    assert r.returncode == 1
    assert "cannot reach the PostgreSQL database" in r.stderr
    assert "Traceback" not in r.stderr
    r = cardkeep("migrate", "--database-url", "mysql://x")
    assert r.returncode == 2
    assert "unsupported database URL" in r.stderr


def test_prod_keys_get_no_sandbox_and_no_sandbox_acquirer(tmp_path: Path) -> None:
    with run_server(tmp_path) as server:
        merchant = Merchant(server, server.create_account("platform", "prod"))
        clock = merchant.api.get("/sandbox/clock")
        assert clock.status_code == 403
        assert clock.json()["code"] == "sandbox_only"
        si = merchant.create_si()
        assert si.status_code == 200
        assert re.fullmatch(r"si_[A-Za-z0-9_-]{22}", si.json()["id"])  # no mode part in prod
        refused = merchant.pci_create()
        assert refused.status_code == 503
        assert refused.json()["code"] == "service_unavailable"
        assert refused.headers["Retry-After"]
        merchant.close()


def test_start_up_failures_are_one_clear_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    r = cardkeep("accounts", "list", "--data-dir", str(empty))
    assert r.returncode == 1
    assert "run `cardkeep migrate`" in r.stderr
    assert "Traceback" not in r.stderr
    env = {"CARDKEEP_LOG_LEVEL": "loud"}
    r = cardkeep("migrate", "--data-dir", str(tmp_path), env=env)
    assert r.returncode == 2
    assert "CARDKEEP_LOG_LEVEL must be one of" in r.stderr


def test_serve_refuses_a_keyring_the_stored_keys_were_not_wrapped_under(tmp_path: Path) -> None:
    import base64

    with run_server(tmp_path) as server:
        key = server.create_account()
        headers = {"Authorization": f"Basic {key}", "version": "2025-09-10"}
        body = {
            "reference": "r",
            "merchantInitiatedTransactionType": "NoShow",
            "terms": "t",
            "cardDetails": {"cardNumber": "5200000000001005", "expiryDate": "12/39", "cv2": "123"},
        }
        assert (
            httpx.post(f"{server.pci_url}/setup-intents", headers=headers, json=body).json()[
                "status"
            ]
            == "Authorized"
        )
    assert "keyring_beside_data" in server.log_text()
    assert not (tmp_path / "vault.key").exists()  # no legacy key is made any more
    other = base64.b64encode(os.urandom(32)).decode()
    keyring = tmp_path / "keyring.json"
    keyring.write_text(f'{{"current": "kek-other", "keys": {{"kek-other": "{other}"}}}}')
    r = cardkeep("serve", "--data-dir", str(tmp_path), *FREE_PORTS)
    assert r.returncode == 1
    assert "stored data-encryption keys are wrapped under KEKs" in r.stderr
    assert other not in r.stderr
    assert "Traceback" not in r.stderr
    env = {"CARDKEEP_VAULT_KEY": "not base64!"}
    r = cardkeep("sweep", "--data-dir", str(tmp_path), env=env)
    assert r.returncode == 1
    assert "CARDKEEP_VAULT_KEY is not base64" in r.stderr


def test_serve_with_a_prod_account_needs_a_keyring_kept_apart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = cardkeep("accounts", "create", "Platform", "--mode", "prod", "--data-dir", str(data))
    assert made.returncode == 0, made.stderr
    args = (
        "serve",
        "--data-dir",
        str(data),
        *FREE_PORTS,
    )

    def refused(env: dict[str, str], expected: str) -> None:
        r = cardkeep(*args, env=env)
        assert r.returncode == 1, r.stderr
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, r.stderr
        assert expected in errors[0], r.stderr
        assert "Traceback" not in r.stderr

    refused({}, "the database holds a prod account: configure the vault's keyring")
    beside = data / "keyring.json"  # the one generated while the database had no prod account
    refused({"CARDKEEP_KEYRING": str(beside)}, "is inside the data directory")
    apart = tmp_path / "keys" / "keyring.json"
    apart.parent.mkdir()
    apart.write_bytes(beside.read_bytes())
    apart.chmod(0o644)
    refused({"CARDKEEP_KEYRING": str(apart)}, "is readable by group or others (mode 0644)")
    apart.chmod(0o600)
    with run_server(data, env={"CARDKEEP_KEYRING": str(apart)}) as server:
        assert httpx.get(f"{server.api_url}/health").status_code == 200
    assert "keyring_beside_data" not in server.log_text()


def test_help_of_every_command_exits_0() -> None:
    for command in (
        [],
        ["serve"],
        ["migrate"],
        ["sweep"],
        ["accounts"],
        ["accounts", "create"],
        ["accounts", "list"],
        ["accounts", "origins"],
        ["accounts", "keys"],
        ["accounts", "new-key"],
        ["accounts", "revoke-key"],
        ["webhooks"],
        ["webhooks", "dispatch"],
        ["webhooks", "replay"],
        ["webhooks", "tail"],
        ["keys"],
        ["keys", "list"],
        ["keys", "rotate"],
        ["keys", "retire"],
    ):
        r = cardkeep(*command, "--help")
        assert r.returncode == 0, (command, r.stderr)
        assert "Usage:" in r.stdout
        assert "Error" not in r.stderr


def test_port_0_reports_the_real_ports_in_the_banner_and_ports_json(tmp_path: Path) -> None:
    import json
    import signal
    import time

    serve = ["serve", "--data-dir", str(tmp_path), *FREE_PORTS, "--sandbox-account"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cardkeep", *serve],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = []
        for line in proc.stderr:
            banner.append(line)
            if "sandbox key:" in line:
                break
        text = "".join(banner)
        doc = json.loads((tmp_path / "ports.json").read_text("utf-8"))
        assert doc["pid"] == proc.pid
        assert doc["api"] > 0
        assert doc["pci"] > 0
        assert doc["internal"] > 0
        assert len({doc["api"], doc["pci"], doc["internal"]}) == 3
        assert f"API listener: http://127.0.0.1:{doc['api']}\n" in text
        assert f"PCI listener: http://127.0.0.1:{doc['pci']}\n" in text
        assert f"internal:     http://127.0.0.1:{doc['internal']}\n" in text
        assert ":0\n" not in text
        for port in (doc["api"], doc["pci"]):
            for _ in range(100):
                try:
                    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise AssertionError(f"nothing answers on port {port}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def test_accounts_origins_shows_sets_and_clears(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    created = cardkeep("accounts", "create", "shop", *data)
    assert created.returncode == 0, created.stderr
    account = created.stderr.split()[3]
    shown = cardkeep("accounts", "origins", account, *data)
    assert shown.stdout.split() == ["http://localhost:*", "http://127.0.0.1:*"]
    assert "sandbox default" in shown.stderr
    set_ = cardkeep("accounts", "origins", account, "HTTPS://Shop.example/", *data)
    assert set_.returncode == 0, set_.stderr
    assert set_.stdout.split() == ["https://shop.example"]
    bad = cardkeep("accounts", "origins", account, "https://shop.example/path", *data)
    assert bad.returncode == 1
    assert "scheme://host[:port]" in bad.stderr
    cleared = cardkeep("accounts", "origins", account, "--clear", *data)
    assert cleared.stdout.split() == ["http://localhost:*", "http://127.0.0.1:*"]
    missing = cardkeep("accounts", "origins", "acc_nope", *data)
    assert missing.returncode == 1
    assert "No account with id acc_nope." in missing.stderr
