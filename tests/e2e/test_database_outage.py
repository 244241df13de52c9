"""The database goes away and comes back (a private PostgreSQL cluster, stopped as abruptly as a
crash): health says 503, requests get 503 with Retry-After within the statement timeout, never a
500, and once the database answers again the same server serves again, without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Merchant, run_server
from tests.postgres import private_cluster

pytestmark = pytest.mark.slow


def test_the_service_answers_503_while_postgres_is_down_and_recovers_by_itself(
    tmp_path: Path,
) -> None:
    env = {"CARDKEEP_DB_CONNECT_TIMEOUT": "2", "CARDKEEP_DB_STATEMENT_TIMEOUT": "2"}
    with (
        private_cluster() as cluster,
        run_server(tmp_path, env=env, database_url=cluster.url) as server,
    ):
        merchant = Merchant(server, server.create_account())
        si = merchant.authorized_si()
        cluster.stop("immediate")
        for url in (server.api_url, server.pci_url):
            health = httpx.get(f"{url}/health", timeout=10)
            assert health.status_code == 503, health.text
            assert health.json()["status"] == "unavailable"
        started = time.monotonic()
        for request in (
            lambda: merchant.get_si(si["id"]),
            lambda: merchant.create_pi(si["id"]),
            lambda: merchant.pci_create(),
        ):
            r = request()
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "service_unavailable"
            assert int(r.headers["Retry-After"]) >= 1
        # Each answer is bounded by the timeouts (2 s here), not left hanging on the database.
        assert time.monotonic() - started < 30
        cluster.start()
        deadline = time.monotonic() + 20
        for url in (server.api_url, server.pci_url):  # the API worker and the PCI process
            while httpx.get(f"{url}/health", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "the service did not come back by itself"
                time.sleep(0.2)
        assert merchant.get_si(si["id"]).json()["status"] == "Authorized"
        pi = merchant.create_pi(si["id"]).json()
        assert merchant.charge(pi["id"]).json()["status"] == "Successful"
        assert "unhandled_error" not in server.log_text()  # 503s all the way, never a 500
        merchant.close()
