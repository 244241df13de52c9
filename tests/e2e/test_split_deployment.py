"""Split deployments: ``cardkeep serve --listener pci`` and ``cardkeep serve --listener api`` as
separate commands (as on separate hosts) over one database, sharing the internal secret.

The API side starts with a keyring path that does not exist (it never opens one); charges cross
to the PCI side; while the PCI side is down a charge is a 503 with Retry-After and nothing moves;
once it is back, recovery on the API side charges it exactly once. Either side refuses to start
without the internal secret, with one clear line.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cardkeep.cde.keys import Keyring, write_keyring
from tests.e2e.harness import (
    SI_FIELDS,
    VERSION,
    Merchant,
    card,
    free_port,
    internal_url,
    run_server,
    workers_of,
)
from tests.e2e.test_cli import cardkeep
from tests.tls import Pem, ca_and_leaf, certificate

SECRET = base64.b64encode(os.urandom(32)).decode()


@dataclass
class Side:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int | None]
    log: Path

    def url(self, listener: str) -> str:
        return f"http://127.0.0.1:{self.ports[listener]}"


def _cmd(data_dir: Path, database_url: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cardkeep",
        *args,
        "--data-dir",
        str(data_dir),
        "--database-url",
        database_url,
    ]


@contextmanager
def side(data_dir: Path, database_url: str, env: dict[str, str], *args: str) -> Iterator[Side]:
    """``cardkeep serve ARGS`` until it answers /health on the listeners it runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            _cmd(data_dir, database_url, "serve", *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                doc = json.loads((data_dir / "ports.json").read_text())
            except (OSError, ValueError):
                doc = {}
            if doc.get("pid") == proc.pid:
                public = "pci" if doc["api"] is None else "api"
                up = Side(proc, doc, log)
                try:
                    if httpx.get(f"{up.url(public)}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def _env(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The PCI side's environment (with the keyring) and the API side's (a keyring path that
    does not exist: it must never look)."""
    shared = {
        "CARDKEEP_INTERNAL_SECRET": SECRET,
        "CARDKEEP_IDEMPOTENCY_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CARDKEEP_WEBHOOK_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CARDKEEP_SWEEP_INTERVAL": "0.2",
        "CARDKEEP_RECOVERY_AFTER": "0.5",
        "CARDKEEP_DISPATCH_INTERVAL": "0.2",
    }
    keyring = tmp_path / "keys" / "keyring.json"
    keyring.parent.mkdir(mode=0o700)
    write_keyring(keyring, Keyring("kek-1", {"kek-1": os.urandom(32)}))
    pci = {**shared, "CARDKEEP_KEYRING": str(keyring)}
    api = {**shared, "CARDKEEP_KEYRING": str(tmp_path / "nowhere" / "keyring.json")}
    return pci, api


def _database(tmp_path: Path, database_url: str | None) -> str:
    return database_url or f"sqlite:///{tmp_path / 'shared.db'}"


API_ARGS = ("--listener", "api", "--api-port", "0")


@dataclass
class Deployment:
    """A split deployment over one database: each side's environment, the internal port the PCI
    side binds and the API side is pointed at, and the PCI side's arguments."""

    tmp_path: Path
    url: str
    pci_env: dict[str, str]
    api_env: dict[str, str]
    internal: int

    @property
    def pci_args(self) -> tuple[str, ...]:
        return ("--listener", "pci", "--pci-port", "0", "--internal-port", str(self.internal))

    def account(self, name: str) -> dict[str, str]:
        """The headers of a new account, made with the PCI side's CLI."""
        made = cardkeep(
            *_cmd(self.tmp_path / "pci", self.url, "accounts", "create", name)[3:], env=self.pci_env
        )
        assert made.returncode == 0, made.stderr
        return {"Authorization": f"Basic {made.stdout.strip()}", "version": VERSION}


def _deployment(tmp_path: Path, database_url: str | None, tls: Pem | None = None) -> Deployment:
    """Both sides' settings; with ``tls``, the PCI side serves the internal listener over TLS
    with it and the API side is pointed at ``https://``."""
    pci_env, api_env = _env(tmp_path)
    internal = free_port()
    scheme = "http" if tls is None else "https"
    api_env["CARDKEEP_INTERNAL_URL"] = f"{scheme}://127.0.0.1:{internal}"
    if tls is not None:
        pci_env |= {
            "CARDKEEP_INTERNAL_TLS_CERT": str(tls.cert),
            "CARDKEEP_INTERNAL_TLS_KEY": str(tls.key),
        }
    return Deployment(tmp_path, _database(tmp_path, database_url), pci_env, api_env, internal)


def test_each_side_runs_apart_and_an_absent_pci_side_is_a_503_then_one_charge(
    tmp_path: Path, database_url: str | None
) -> None:
    split = _deployment(tmp_path, database_url)
    url, pci_env, api_env, pci_args = split.url, split.pci_env, split.api_env, split.pci_args
    headers = split.account("split")
    with (
        side(tmp_path / "pci", url, pci_env, *pci_args) as pci,
        side(tmp_path / "api", url, api_env, *API_ARGS) as api,
    ):
        assert pci.ports["api"] is None
        assert api.ports["pci"] is None
        assert api.ports["internal"] is None
        assert httpx.get(f"{api.url('api')}/health", timeout=5).status_code == 200
        (worker,) = workers_of(api.proc.pid, "api")
        assert b"CARDKEEP_KEYRING" not in Path(f"/proc/{worker}/environ").read_bytes()
        with (
            httpx.Client(base_url=pci.url("pci"), headers=headers, timeout=30) as on_pci,
            httpx.Client(base_url=api.url("api"), headers=headers, timeout=30) as on_api,
        ):
            first = _payment_intent(on_pci, on_api)
            r = on_api.post(f"/payment-intents/{first}/charge")
            assert (r.status_code, r.json()["status"]) == (200, "Successful"), r.text
            second = _payment_intent(on_pci, on_api)

            pci.proc.send_signal(signal.SIGTERM)  # the PCI side goes away
            assert pci.proc.wait(timeout=30) == 0
            r = on_api.post(f"/payment-intents/{second}/charge")
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"]
            again = on_api.post(f"/payment-intents/{second}/charge")
            assert again.status_code in (409, 503), again.text  # no second attempt
            assert "pci_unreachable" in api.log.read_text()

            with side(tmp_path / "pci", url, pci_env, *pci_args):  # back, on the same port
                deadline = time.monotonic() + 30
                while on_api.get(f"/payment-intents/{second}").json()["status"] != "Captured":
                    assert time.monotonic() < deadline, api.log.read_text()
                    time.sleep(0.1)
    ledger = _ledger(tmp_path, url)
    assert sorted(key.split(":")[1] for key in ledger) == sorted([first, second])


def _payment_intent(on_pci: httpx.Client, on_api: httpx.Client) -> str:
    """A card authorized on the PCI side, and a payment intent for it on the API side."""
    si = on_pci.post("/setup-intents", json={**SI_FIELDS, "cardDetails": card()})
    assert si.json()["status"] == "Authorized", si.text
    body = {
        "amount": {"value": 1000, "currencyCode": "GBP"},
        "reference": "No-show fee",
        "setupIntentId": si.json()["id"],
    }
    pi = on_api.post("/payment-intents", json=body)
    assert pi.status_code == 200, pi.text
    return str(pi.json()["id"])


def _ledger(tmp_path: Path, url: str) -> list[str]:
    """The sandbox acquirer's approved charge keys."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url[len("sqlite:///") :]) as db:
            rows = db.execute("SELECT idempotency_key, result FROM sandbox_ledger").fetchall()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            rows = pg.execute("SELECT idempotency_key, result FROM sandbox_ledger").fetchall()
    return [key for key, result in rows if key.startswith("charge:") and result == "approved"]


def test_a_side_alone_refuses_to_start_without_the_internal_secret(tmp_path: Path) -> None:
    unset = {"CARDKEEP_INTERNAL_SECRET": "", "CARDKEEP_INTERNAL_SECRET_FILE": ""}
    for listener in ("api", "pci"):
        data = str(tmp_path / listener)
        r = cardkeep("serve", "--data-dir", data, "--listener", listener, env=unset)
        assert r.returncode == 1, r.stderr
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, r.stderr
        assert f"--listener {listener} needs the internal secret" in errors[0]
        assert "CARDKEEP_INTERNAL_SECRET" in errors[0]
        assert "Traceback" not in r.stderr
    r = cardkeep("serve", "--data-dir", str(tmp_path / "x"), env={"CARDKEEP_INTERNAL_SECRET": "s"})
    assert r.returncode != 0
    assert "CARDKEEP_INTERNAL_SECRET must be at least 32" in r.stderr


def _refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_process_given_another_shared_key_refuses_to_start(
    tmp_path: Path, database_url: str | None
) -> None:
    """The keys both sides use (the Idempotency-Key seal, the webhook secrets' seal) must be the
    same everywhere on one database: a side or an instance started with another refuses to
    start, naming the key and where it came from, and binds no port."""
    split = _deployment(tmp_path, database_url)
    url, pci_env, api_env = split.url, split.pci_env, split.api_env
    other = base64.b64encode(os.urandom(32)).decode()
    with side(tmp_path / "pci", url, pci_env, *split.pci_args):
        for variable, name in (
            ("CARDKEEP_IDEMPOTENCY_KEY", "idempotency"),
            ("CARDKEEP_WEBHOOK_KEY", "webhook"),
        ):
            data_dir = tmp_path / f"api-{name}"
            wrong = cardkeep(
                *_cmd(data_dir, url, "serve", *API_ARGS)[3:], env={**api_env, variable: other}
            )
            _refused(wrong, f"the {name} key ({variable})", "must be given the same key")
            assert not (data_dir / "ports.json").exists()
        # Another instance that was given no keys generates its own beside its data: refused too.
        alone = tmp_path / "alone"
        unset = {**pci_env, "CARDKEEP_IDEMPOTENCY_KEY": "", "CARDKEEP_WEBHOOK_KEY": ""}
        wrong = cardkeep(
            *_cmd(alone, url, "serve", "--api-port", "0", "--pci-port", "0")[3:], env=unset
        )
        _refused(wrong, "key (" + str(alone))
        # The right keys start.
        with side(tmp_path / "api", url, api_env, *API_ARGS) as good:
            assert httpx.get(f"{good.url('api')}/health", timeout=5).status_code == 200


def test_the_hop_over_tls_split_apart_and_under_one_supervisor(tmp_path: Path) -> None:
    """With CARDKEEP_INTERNAL_TLS_CERT and _KEY the internal listener serves TLS only. Split: the
    API side verifies it with CARDKEEP_INTERNAL_CA_FILE and charges; an API side that trusts only
    the system's CAs cannot: its charge is a 503, and recovery on the other side charges it once.
    Under one supervisor the API workers trust exactly the certificate the PCI process serves. A
    certificate and key that do not load stop ``serve`` with one line."""
    ca, leaf = ca_and_leaf(tmp_path / "tls")
    split = _deployment(tmp_path, None, tls=leaf)
    url, internal = split.url, split.internal
    headers = split.account("tls")
    trusted = {**split.api_env, "CARDKEEP_INTERNAL_CA_FILE": str(ca.cert)}
    with (
        side(tmp_path / "pci", url, split.pci_env, *split.pci_args) as pci,
        side(tmp_path / "api", url, trusted, *API_ARGS) as api,
        side(tmp_path / "untrusting", url, split.api_env, *API_ARGS) as untrusting,
        httpx.Client(base_url=pci.url("pci"), headers=headers, timeout=30) as on_pci,
        httpx.Client(base_url=api.url("api"), headers=headers, timeout=30) as on_api,
        httpx.Client(base_url=untrusting.url("api"), headers=headers, timeout=30) as on_other,
    ):
        with pytest.raises(httpx.HTTPError):  # TLS only: plain HTTP gets no answer
            httpx.post(f"http://127.0.0.1:{internal}/internal/charge", timeout=5)
        pi = _payment_intent(on_pci, on_api)
        r = on_api.post(f"/payment-intents/{pi}/charge")
        assert (r.status_code, r.json()["status"]) == (200, "Successful"), r.text
        refused = _payment_intent(on_pci, on_other)
        r = on_other.post(f"/payment-intents/{refused}/charge")
        assert r.status_code == 503, r.text
        assert "pci_unreachable" in untrusting.log.read_text()
        # The claim stays; recovery on the side that can verify the PCI process charges it once.
        deadline = time.monotonic() + 30
        while on_api.get(f"/payment-intents/{refused}").json()["status"] != "Captured":
            assert time.monotonic() < deadline, api.log.read_text()
            time.sleep(0.1)
    assert sorted(key.split(":")[1] for key in _ledger(tmp_path, url)) == sorted([pi, refused])

    self_signed, _ = certificate(tmp_path / "tls", "self")
    tls_env = {
        "CARDKEEP_INTERNAL_TLS_CERT": str(self_signed.cert),
        "CARDKEEP_INTERNAL_TLS_KEY": str(self_signed.key),
    }
    with run_server(tmp_path / "one", env=tls_env) as server:
        port = internal_url(server.data_dir).rsplit(":", 1)[1]
        assert f"internal:     https://127.0.0.1:{port}" in server.log_text()
        merchant = Merchant(server, server.create_account())
        si = merchant.authorized_si()["id"]
        pi = merchant.create_pi(si).json()["id"]
        r = merchant.charge(pi)
        assert (r.status_code, r.json()["status"]) == (200, "Successful"), r.text
        merchant.close()

    garbage = tmp_path / "tls" / "garbage.crt"
    garbage.write_text("not a certificate\n")
    bad = {**tls_env, "CARDKEEP_INTERNAL_TLS_CERT": str(garbage)}
    _refused(
        cardkeep("serve", "--data-dir", str(tmp_path / "bad"), "--api-port", "0", env=bad),
        "do not load as a PEM certificate and its private key",
    )
