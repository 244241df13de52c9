"""Acceptance 5: money moves exactly once under concurrent charges.

A server with two worker processes on one SQLite file: 30 concurrent charge requests on one
payment intent, over 20 trials, give exactly one success and no 5xx. A second test races the
charges of several payment intents of the same setup intent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import VERSION, Merchant, Server, run_server
from tests.postgres import throwaway_database

TRIALS = 20
CONCURRENCY = 30


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def two_workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("race")
    if request.param == "sqlite":
        with run_server(data_dir, workers=2) as srv:
            yield srv
        return
    with (
        throwaway_database("race") as url,
        run_server(data_dir, workers=2, database_url=url) as srv,
    ):
        yield srv


async def _charge_all(server: Server, key: str, pi_ids: list[str]) -> list[httpx.Response]:
    headers = {"Authorization": f"Basic {key}", "version": VERSION}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=server.api_url, headers=headers, timeout=60, limits=limits
    ) as client:
        return await asyncio.gather(
            *(client.post(f"/payment-intents/{pi_id}/charge") for pi_id in pi_ids)
        )


def test_thirty_concurrent_charges_of_one_payment_intent(two_workers: Server) -> None:
    merchant = Merchant(two_workers, two_workers.create_account("racer"))
    try:
        for trial in range(TRIALS):
            si = merchant.authorized_si()
            pi = merchant.create_pi(si["id"], 1000 + trial * 100).json()
            responses = asyncio.run(
                _charge_all(two_workers, merchant.key, [pi["id"]] * CONCURRENCY)
            )
            statuses = Counter(r.status_code for r in responses)
            assert not [s for s in statuses if s >= 500], (
                trial,
                statuses,
                [r.text for r in responses if r.status_code >= 500],
            )
            successes = [
                r for r in responses if r.status_code == 200 and r.json()["status"] == "Successful"
            ]
            assert len(successes) == 1, (trial, statuses)
            for r in responses:
                if r.status_code != 200:
                    assert r.json()["code"] in ("invalid_state", "charge_in_progress"), r.text
            final = merchant.api.get(f"/payment-intents/{pi['id']}").json()
            assert final["status"] == "Captured"
            assert [e["eventType"] for e in final["paymentEvents"]] == ["Captured"]
            assert merchant.get_si(si["id"]).json()["status"] == "Completed"
    finally:
        merchant.close()


def test_concurrent_charges_of_sibling_payment_intents(two_workers: Server) -> None:
    merchant = Merchant(two_workers, two_workers.create_account("siblings"))
    try:
        for trial in range(5):
            si = merchant.authorized_si()
            # Amounts clear of the sandbox triggers (…05, …51, …98, …99 decline, fail or get lost).
            pis = [merchant.create_pi(si["id"], 2000 + 10 * i).json()["id"] for i in range(10)]
            responses = asyncio.run(_charge_all(two_workers, merchant.key, pis * 3))
            assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
            won = {
                r.json()["paymentIntentId"]
                for r in responses
                if r.status_code == 200 and r.json()["status"] == "Successful"
            }
            assert len(won) == 1, (trial, won)
            captured = [
                p
                for p in pis
                if merchant.api.get(f"/payment-intents/{p}").json()["status"] == "Captured"
            ]
            assert captured == list(won)
            assert merchant.get_si(si["id"]).json()["status"] == "Completed"
    finally:
        merchant.close()
