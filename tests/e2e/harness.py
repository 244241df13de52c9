"""A real cardkeep process for end-to-end tests: both listeners over HTTP on 127.0.0.1, a SQLite
file on disk, the server's log captured to a file that tests can scan."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cardkeep.bootstrap import Runtime
from cardkeep.config import Settings
from cardkeep.domain.account import Mode

VERSION = "2025-09-10"
APPROVED_CARD = "5200000000001005"
DECLINED_CARD = "4000000000000002"
TEST_PANS = (
    "5200000000001005",
    "5200000000000056",
    "5200000000001096",
    "4456530000001013",
    "4000000000000002",
    "4000000000009995",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    data_dir: Path
    api_url: str
    pci_url: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "cardkeep.db"

    def create_account(self, name: str = "merchant", mode: str = "sandbox") -> str:
        """A new account's secret key (through the service, on the server's own database)."""
        with Runtime.open(Settings(data_dir=self.data_dir)) as runtime:
            _, key = runtime.services.accounts.create(name, Mode(mode))
        return key

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")


def read_ports(data_dir: Path, pid: int) -> tuple[int, int] | None:
    """The (API, PCI) ports that the server with ``pid`` wrote to ``ports.json``, once it has."""
    try:
        doc = json.loads((data_dir / "ports.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if doc.get("pid") != pid:
        return None  # a file left by an earlier server
    return int(doc["api"]), int(doc["pci"])


def _start(data_dir: Path, workers: int, env: dict[str, str] | None) -> Server:
    """Start a server on free ports (``--api-port 0``) and wait until both listeners answer."""
    log_path = data_dir / "server.log"
    full_env = {
        **os.environ,
        "CARDKEEP_SWEEP_INTERVAL": "0.2",
        "CARDKEEP_RECOVERY_AFTER": "0.5",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "cardkeep", "serve", "--data-dir", str(data_dir)]
    cmd += ["--api-port", "0", "--pci-port", "0", "--workers", str(workers)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    deadline = time.monotonic() + 30
    server: Server | None = None
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"cardkeep exited early:\n{log_path.read_text('utf-8')}")
        if server is None:
            ports = read_ports(data_dir, proc.pid)
            if ports is not None:
                api, pci = (f"http://127.0.0.1:{port}" for port in ports)
                server = Server(data_dir, api, pci, log_path, proc)
        if server is not None:
            try:
                urls = (server.api_url, server.pci_url)
                if all(httpx.get(f"{u}/health", timeout=1).status_code == 200 for u in urls):
                    return server
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"cardkeep did not start:\n{log_path.read_text('utf-8')}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def run_server(
    data_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Server]:
    data_dir.mkdir(parents=True, exist_ok=True)
    server = _start(data_dir, workers, env)
    try:
        yield server
    finally:
        _stop(server.proc)


SI_FIELDS: dict[str, Any] = {
    "reference": "Table 4",
    "merchantInitiatedTransactionType": "NoShow",
    "terms": "In case of no-show, the customer authorizes us to charge the table booking fee.",
    "intendedAmount": {"value": 1000, "currencyCode": "GBP"},
}


def card(number: str = APPROVED_CARD, expiry: str = "12/39", cv2: str = "020") -> dict[str, str]:
    return {"cardNumber": number, "cardName": "Test Cardholder", "expiryDate": expiry, "cv2": cv2}


class Merchant:
    """One account's view of both listeners, with the requests the flow needs."""

    def __init__(self, server: Server, key: str) -> None:
        self.server = server
        self.key = key
        headers = {"Authorization": f"Basic {key}", "version": VERSION}
        self.api = httpx.Client(base_url=server.api_url, headers=headers, timeout=30)
        self.pci = httpx.Client(base_url=server.pci_url, headers=headers, timeout=30)

    def close(self) -> None:
        self.api.close()
        self.pci.close()

    def pci_create(
        self, card_details: dict[str, str] | None = None, **fields: Any
    ) -> httpx.Response:
        body = {**SI_FIELDS, **fields, "cardDetails": card_details or card()}
        return self.pci.post("/setup-intents", json=body)

    def authorized_si(self, **fields: Any) -> dict[str, Any]:
        r = self.pci_create(**fields)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Authorized"
        return r.json()  # type: ignore[no-any-return]

    def create_si(self, **fields: Any) -> httpx.Response:
        return self.api.post("/setup-intents", json={**SI_FIELDS, **fields})

    def get_si(self, si_id: str) -> httpx.Response:
        return self.api.get(f"/setup-intents/{si_id}")

    def create_pi(
        self, si_id: str | None, value: int = 1000, currency: str = "GBP", **fields: Any
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "amount": {"value": value, "currencyCode": currency},
            "reference": "No-show fee",
            **fields,
        }
        if si_id is not None:
            body["setupIntentId"] = si_id
        return self.api.post("/payment-intents", json=body)

    def charge(self, pi_id: str) -> httpx.Response:
        return self.api.post(f"/payment-intents/{pi_id}/charge")

    def advance(self, seconds: int) -> httpx.Response:
        return self.api.post("/sandbox/clock/advance", json={"seconds": seconds})
