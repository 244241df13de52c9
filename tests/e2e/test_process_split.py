"""The process model against real processes: ``cardkeep serve`` runs one PCI process, the only one
with key material, and API workers that charge through its internal listener.

- An API worker is given no keyring path, no KEK, no fingerprint key and no TLS key (the hop runs
  over TLS there), in its environment or otherwise, and holds no key file open, while charges run
  through it (``/proc/PID/environ`` and ``/proc/PID/fd``); the PCI process, the positive control,
  does have them.
- The internal listener is a door of its own: not on the public listeners, and closed (404) to a
  request without the internal secret.
- The PCI process killed with SIGKILL in the middle of a burst of charges: the supervisor starts
  it again, every charge ends captured exactly once in the acquirer's ledger, and the merchant
  never saw anything but 200, 409 (in progress) or 503 with Retry-After.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cardkeep.cde.keys import Keyring, write_keyring
from tests.e2e.harness import (
    Merchant,
    Server,
    alive,
    http_client,
    internal_url,
    processes_of,
    run_server,
    workers_of,
)
from tests.tls import certificate

KEY_FILES = ("keyring.json", "vault.key", "fingerprint.key", "internal.key")


def _keys(tmp_path: Path) -> tuple[dict[str, str], list[bytes]]:
    """The environment of a server with its keys kept apart, and every secret in it."""
    path = tmp_path / "keys" / "keyring.json"
    path.parent.mkdir(mode=0o700)
    kek = os.urandom(32)
    write_keyring(path, Keyring("kek-1", {"kek-1": kek}))
    fingerprint = base64.b64encode(os.urandom(32)).decode()
    tls, _ = certificate(path.parent)  # the internal listener's TLS key: internal.key
    env = {
        "CARDKEEP_KEYRING": str(path),
        "CARDKEEP_FINGERPRINT_KEY": fingerprint,
        "CARDKEEP_INTERNAL_TLS_CERT": str(tls.cert),
        "CARDKEEP_INTERNAL_TLS_KEY": str(tls.key),
    }
    secrets = [
        str(path).encode(),
        str(tls.key).encode(),
        base64.b64encode(kek),
        base64.urlsafe_b64encode(kek).rstrip(b"="),
        fingerprint.encode(),
    ]
    return env, secrets


KEY_NAMES = (b"CARDKEEP_KEYRING", b"CARDKEEP_FINGERPRINT_KEY", b"CARDKEEP_INTERNAL_TLS_KEY")


def _open_files(pid: int) -> list[str]:
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return targets


class Charging:
    """Flows (card on the PCI listener, payment intent and charge on the API listener) run in a
    thread until stopped; how many charges succeeded."""

    def __init__(self, merchant: Merchant) -> None:
        self.merchant = merchant
        self.succeeded = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            si = self.merchant.authorized_si()
            pi = self.merchant.create_pi(si["id"]).json()
            r = self.merchant.charge(pi["id"])
            if r.status_code == 200 and r.json()["status"] == "Successful":
                self.succeeded += 1
            else:
                self.failures.append(r.text)

    def __enter__(self) -> Charging:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_an_api_worker_holds_no_key_while_it_charges(
    tmp_path: Path, database_url: str | None
) -> None:
    env, secrets = _keys(tmp_path)
    with run_server(tmp_path / "data", workers=2, env=env, database_url=database_url) as server:
        api_workers = processes_of(server, "api", 2)
        (pci,) = processes_of(server, "pci")
        merchant = Merchant(server, server.create_account())
        samples = 0
        with Charging(merchant) as charging:
            deadline = time.monotonic() + 60
            while charging.succeeded < 10 or samples < 20:
                assert time.monotonic() < deadline, "charges did not run"
                for pid in api_workers:
                    environ = Path(f"/proc/{pid}/environ").read_bytes()
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    for name in KEY_NAMES:
                        assert name not in environ, f"API worker {pid} has {name!r}"
                    for secret in secrets:
                        assert secret not in environ
                        assert secret not in cmdline
                    for target in _open_files(pid):
                        assert not target.endswith(KEY_FILES), f"API worker {pid} opened {target}"
                        assert target.encode() not in secrets
                samples += 1
                time.sleep(0.02)
        merchant.close()
        assert charging.failures == []
        # The control: the PCI process was given them (and so the checks above could fail).
        environ = Path(f"/proc/{pci}/environ").read_bytes()
        assert b"CARDKEEP_KEYRING=" + secrets[0] in environ
        assert b"CARDKEEP_INTERNAL_TLS_KEY=" + secrets[1] in environ
        assert workers_of(server.proc.pid, "api") == api_workers  # none died meanwhile


def test_the_internal_listener_is_its_own_door_and_only_the_secret_opens_it(
    server: Server,
) -> None:
    internal = internal_url(server.data_dir)
    body = b'{"mode":"sandbox"}'
    for base in (server.api_url, server.pci_url):  # not on the public listeners
        r = httpx.post(f"{base}/internal/charge", content=body, timeout=10)
        assert r.status_code == 404
    for headers in ({}, {"Authorization": "Bearer not-the-secret"}):
        r = httpx.post(f"{internal}/internal/charge", content=body, headers=headers, timeout=10)
        assert (r.status_code, r.content) == (404, b'{"status":404,"title":"Not Found"}')
    assert httpx.get(f"{internal}/health", timeout=10).status_code == 404
    assert internal.startswith("http://127.0.0.1:")


CHARGES = 24
TRIALS = 4


@pytest.mark.slow
def test_killing_the_pci_process_mid_charge_charges_each_once_and_it_comes_back(
    tmp_path: Path, database_url: str | None
) -> None:
    rng = random.Random()
    with run_server(tmp_path, workers=2, database_url=database_url) as server:
        merchant = Merchant(server, server.create_account())
        seen: Counter[int] = Counter()
        for trial in range(TRIALS):
            (pci,) = processes_of(server, "pci")
            pis = []
            for _ in range(CHARGES):
                si = merchant.authorized_si()
                pis.append(merchant.create_pi(si["id"]).json()["id"])
            kill_after = rng.randint(1, CHARGES // 2)
            done = threading.Semaphore(0)

            def charge(pi_id: str) -> httpx.Response:
                with http_client(server.api_url, merchant.api.headers) as client:
                    try:
                        return client.post(f"/payment-intents/{pi_id}/charge")
                    finally:
                        done.release()

            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(charge, pi_id) for pi_id in pis]
                for _ in range(kill_after):
                    done.acquire()
                os.kill(pci, signal.SIGKILL)
                answers = [f.result() for f in futures]
            for r in answers:
                seen[r.status_code] += 1
                assert r.status_code in (200, 409, 503), r.text
                if r.status_code == 503:
                    assert r.headers["Retry-After"], r.headers
                if r.status_code == 200:
                    assert r.json()["status"] == "Successful", r.text
            # The supervisor starts the PCI process again; recovery settles every charge.
            deadline = time.monotonic() + 60
            while not alive_other_than(server, pci):
                assert time.monotonic() < deadline, f"trial {trial}: the PCI process stayed dead"
                time.sleep(0.1)
            for pi_id in pis:
                while True:
                    status = merchant.api.get(f"/payment-intents/{pi_id}").json()["status"]
                    if status == "Captured":
                        break
                    assert time.monotonic() < deadline, f"trial {trial}: {pi_id} is {status}"
                    time.sleep(0.1)
            captures = Counter(
                key.split(":")[1]
                for key, result in server.sql("SELECT idempotency_key, result FROM sandbox_ledger")
                if key.startswith("charge:") and result == "approved"
            )
            for pi_id in pis:
                assert captures[pi_id] == 1, f"trial {trial}: {pi_id} charged {captures[pi_id]}x"
        merchant.close()
        assert "role=pci" in server.log_text() or '"role": "pci"' in server.log_text()
        assert seen[200] > 0, seen
        assert seen[503] > 0, seen  # the kill did land mid-burst


def alive_other_than(server: Server, dead: int) -> bool:
    """A new PCI process runs and answers on the PCI listener."""
    now = workers_of(server.proc.pid, "pci")
    if not now or dead in now or not all(alive(pid) for pid in now):
        return False
    try:
        return httpx.get(f"{server.pci_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
