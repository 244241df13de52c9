"""``serve --workers N`` as a process tree: a worker that dies is restarted, workers die with their
supervisor (even after kill -9, so a restart can bind the same ports at once), and the background
loop runs in every worker, its items leased, so losing a worker neither stops nor doubles it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.harness import Merchant, alive, read_ports, run_server, workers_of


def wait_until(what: str, check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def test_a_dead_worker_is_restarted_and_the_service_keeps_answering(
    tmp_path: Path, database_url: str | None
) -> None:
    with run_server(tmp_path, workers=2, database_url=database_url) as server:
        wait_until("two workers run", lambda: len(workers_of(server.proc.pid, "api")) == 2)
        first = workers_of(server.proc.pid, "api")
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(
            "a new worker replaces the dead one",
            lambda: (
                len(workers_of(server.proc.pid, "api")) == 2
                and victim not in workers_of(server.proc.pid, "api")
            ),
        )
        for _ in range(20):  # every answer comes from a live worker
            assert httpx.get(f"{server.api_url}/health", timeout=5).status_code == 200
        assert "worker_died" in server.log_text()


def test_workers_die_with_their_supervisor_and_a_restart_binds_the_same_ports(
    tmp_path: Path,
) -> None:
    def start(api: int, pci: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "cardkeep", "serve", "--data-dir", str(tmp_path)]
        cmd += ["--api-port", str(api), "--pci-port", str(pci), "--internal-port", "0"]
        cmd += ["--workers", "2"]
        log = open(tmp_path / "serve.log", "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen(cmd, stdout=log, stderr=log)

    proc = start(0, 0)
    try:
        wait_until("ports are written", lambda: read_ports(tmp_path, proc.pid) is not None)
        ports = read_ports(tmp_path, proc.pid)
        assert ports is not None
        url = f"http://127.0.0.1:{ports[0]}/health"
        wait_until("it serves", lambda: _answers(url))
        wait_until("two workers run", lambda: len(workers_of(proc.pid, "api")) == 2)
        workers = workers_of(proc.pid, "api")
        proc.kill()  # kill -9 of the supervisor: no chance to stop its workers itself
        proc.wait()
        wait_until("every worker is gone", lambda: not any(alive(pid) for pid in workers), 15)
        assert not _answers(url)
        proc = start(*ports)
        wait_until("a restart serves on the same ports", lambda: _answers(url))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_recovery_runs_in_every_worker_and_settles_a_charge_once(
    tmp_path: Path, database_url: str | None
) -> None:
    with run_server(tmp_path, workers=2, database_url=database_url) as server:
        wait_until("two workers run", lambda: len(workers_of(server.proc.pid, "api")) == 2)
        merchant = Merchant(server, server.create_account())
        si = merchant.authorized_si()
        pi = merchant.create_pi(si["id"], value=1099).json()  # the answer is lost
        assert merchant.charge(pi["id"]).status_code == 503
        os.kill(min(workers_of(server.proc.pid, "api")), signal.SIGKILL)  # whichever worker it is
        headers = {"Authorization": f"Basic {merchant.key}", "version": "2025-09-10"}

        def captured() -> bool:  # a fresh connection each time: the old one died with its worker
            r = httpx.get(f"{server.api_url}/payment-intents/{pi['id']}", headers=headers)
            return bool(r.json()["status"] == "Captured")

        wait_until("recovery settles the charge", captured)
        time.sleep(1.5)  # a few more sweeps in both workers: nothing is settled again
        recovered = [
            json.loads(line).get("recovered_charges", 0)
            for line in server.log_text().splitlines()
            if '"event": "sweep"' in line
        ]
        assert sum(recovered) == 1
        rows = server.sql(
            "SELECT result FROM sandbox_ledger WHERE idempotency_key LIKE ?",
            (f"charge:{pi['id']}:%",),
        )
        assert [tuple(row) for row in rows] == [("approved",)]
        merchant.close()
