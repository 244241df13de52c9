"""Money moves exactly once, on both engines, under everything that can race a charge.

- 50 concurrent charges of one payment intent, and 25 + 25 of two payment intents of the same setup
  intent, against ``serve --workers 2``, over 200 trials per engine; and the same across two
  separate instances sharing one PostgreSQL database: exactly one capture per setup intent in the
  sandbox acquirer's ledger, no 5xx, the losers only 4xx.
- A charge racing ``DELETE …?includeAuthorized=true`` of its setup intent, 500 trials per engine:
  either Completed with one capture or Closed with none, never both.
- A charge racing the boundaries the clock moves: the card's expiry month ending (never a capture
  on a CardExpired setup intent) and the payment intent's own ``expireAt`` (never a capture on a
  Canceled one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import SI_FIELDS, VERSION, Server, card, run_server
from tests.postgres import throwaway_database

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("RACE_TRIALS", "200"))
DELETE_TRIALS = int(os.environ.get("RACE_DELETE_TRIALS", "500"))
CLOCK_TRIALS = int(os.environ.get("RACE_CLOCK_TRIALS", "60"))
IN_FLIGHT = 8  # trials run at once
LOSERS = {"invalid_state", "charge_in_progress", "setup_intent_not_usable"}
# Under this much load an acquirer call can take longer than the harness's quarter of a second;
# these races are about claims, not about recovery: the production timeout (10 s) applies.
PATIENT = {"CARDKEEP_RECOVERY_AFTER": "30"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def two_workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("race")
    if request.param == "sqlite":
        with run_server(data_dir, workers=2, env=PATIENT) as srv:
            yield srv
        return
    with (
        throwaway_database("race") as url,
        run_server(data_dir, workers=2, env=PATIENT, database_url=url) as srv,
    ):
        yield srv


@dataclass
class Racer:
    """One account, over one or several instances' API listeners (round robin) and a PCI one."""

    api_urls: Sequence[str]
    pci_url: str
    key: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    _next: int = 0

    async def __aenter__(self) -> Racer:
        headers = {"Authorization": f"Basic {self.key}", "version": VERSION}
        # A fresh connection per request: no request is sent on a kept-alive connection the
        # server is closing at that moment (which no client can tell from a refusal).
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
        for url in [*self.api_urls, self.pci_url]:
            self.clients.append(
                httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits)
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            await client.aclose()

    def api(self) -> httpx.AsyncClient:
        self._next = (self._next + 1) % len(self.api_urls)
        return self.clients[self._next]

    @property
    def pci(self) -> httpx.AsyncClient:
        return self.clients[-1]

    async def authorized_si(self, expiry: str = "12/39") -> str:
        r = await self.pci.post(
            "/setup-intents", json={**SI_FIELDS, "cardDetails": card(expiry=expiry)}
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Authorized", r.text
        return str(r.json()["id"])

    async def create_pi(self, si_id: str, value: int = 1000, **fields: Any) -> str:
        body = {"amount": {"value": value, "currencyCode": "GBP"}, "reference": "race", **fields}
        r = await self.api().post("/payment-intents", json={**body, "setupIntentId": si_id})
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    async def charge(self, pi_id: str) -> httpx.Response:
        return await self.api().post(f"/payment-intents/{pi_id}/charge")

    async def get(self, path: str) -> dict[str, Any]:
        r = await self.api().get(path)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def _successes(responses: Sequence[httpx.Response]) -> list[httpx.Response]:
    return [r for r in responses if r.status_code == 200 and r.json()["status"] == "Successful"]


def _only_losing_4xx(responses: Sequence[httpx.Response], where: object) -> None:
    statuses = Counter(r.status_code for r in responses)
    fives = [r.text for r in responses if r.status_code >= 500]
    assert not fives, (where, statuses, fives[:3])
    for r in responses:
        if r.status_code != 200:
            assert r.json()["code"] in LOSERS, (where, r.text)


def _captures_by_setup_intent(server: Server) -> dict[str, int]:
    """Approved charge attempts in the sandbox acquirer's ledger, per setup intent."""
    setup_of = dict(server.sql("SELECT id, setup_intent_id FROM payment_intents"))
    captures: Counter[str] = Counter()
    for key, result in server.sql("SELECT idempotency_key, result FROM sandbox_ledger"):
        pi_id = str(key).split(":")[1]
        if result == "approved":
            captures[str(setup_of[pi_id])] += 1
    return dict(captures)


async def _trials(count: int, trial: Any) -> list[Any]:
    """Run ``trial(i)`` for i in range(count), ``IN_FLIGHT`` at a time."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> Any:
        async with gate:
            return await trial(i)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def _concurrent_charges(racer: Racer, trials: int) -> list[str]:
    """Per trial, two setup intents: 50 charges of one payment intent, and 25 + 25 of two."""

    async def trial(i: int) -> list[str]:
        one = await racer.authorized_si()
        pi = await racer.create_pi(one, 1000 + (i % 40) * 10)
        responses = await asyncio.gather(*(racer.charge(pi) for _ in range(50)))
        _only_losing_4xx(responses, (i, "one"))
        assert len(_successes(responses)) == 1, (i, Counter(r.status_code for r in responses))
        two = await racer.authorized_si()
        a, b = await racer.create_pi(two, 2000), await racer.create_pi(two, 2010)
        responses = await asyncio.gather(*(racer.charge(p) for p in [a, b] * 25))
        _only_losing_4xx(responses, (i, "two"))
        assert len(_successes(responses)) == 1, (i, Counter(r.status_code for r in responses))
        return [one, two]

    setup_intents = [si for pair in await _trials(trials, trial) for si in pair]
    return setup_intents


def test_concurrent_charges_move_money_once(two_workers: Server) -> None:
    key = two_workers.create_account("racer")

    async def run() -> list[str]:
        async with Racer([two_workers.api_url], two_workers.pci_url, key) as racer:
            return await _concurrent_charges(racer, TRIALS)

    setup_intents = asyncio.run(run())
    captures = _captures_by_setup_intent(two_workers)
    assert len(setup_intents) == 2 * TRIALS
    assert {si: captures.get(si, 0) for si in setup_intents} == dict.fromkeys(setup_intents, 1)


def test_two_instances_on_one_postgres_database_move_money_once(tmp_path: Path) -> None:
    keys = {
        **PATIENT,
        # The vault's keyring, shared by both instances (as the README says they must).
        "CARDKEEP_KEYRING_JSON": json.dumps(
            {"current": "kek-1", "keys": {"kek-1": base64.b64encode(os.urandom(32)).decode()}}
        ),
        # The keys kept outside the database, the same on both (else the second one refuses).
        **{
            f"CARDKEEP_{name}_KEY": base64.b64encode(os.urandom(32)).decode()
            for name in ("IDEMPOTENCY", "WEBHOOK", "FINGERPRINT")
        },
    }
    with (
        throwaway_database("twin") as url,
        run_server(tmp_path / "a", env=keys, database_url=url) as first,
        run_server(tmp_path / "b", env=keys, database_url=url) as second,
    ):
        key = first.create_account("twins")

        async def run() -> list[str]:
            urls = [first.api_url, second.api_url]
            async with Racer(urls, second.pci_url, key) as racer:
                return await _concurrent_charges(racer, TRIALS)

        setup_intents = asyncio.run(run())
        captures = _captures_by_setup_intent(first)
        assert {si: captures.get(si, 0) for si in setup_intents} == dict.fromkeys(setup_intents, 1)


def test_a_charge_racing_the_close_of_its_setup_intent(two_workers: Server) -> None:
    key = two_workers.create_account("closer")

    async def run() -> list[tuple[str, str]]:
        async with Racer([two_workers.api_url], two_workers.pci_url, key) as racer:

            async def trial(i: int) -> tuple[str, str]:
                si = await racer.authorized_si()
                pi = await racer.create_pi(si)
                charged, closed = await asyncio.gather(
                    racer.charge(pi),
                    racer.api().delete(f"/setup-intents/{si}?includeAuthorized=true"),
                )
                assert charged.status_code < 500, charged.text
                assert closed.status_code < 500, closed.text
                won_charge = charged.status_code == 200 and charged.json()["status"] == "Successful"
                won_close = closed.status_code == 200 and closed.json()["status"] == "Closed"
                assert won_charge != won_close, (i, charged.text, closed.text)
                final = (await racer.get(f"/setup-intents/{si}"))["status"]
                assert final == ("Completed" if won_charge else "Closed"), (i, final)
                return si, final

            return await _trials(DELETE_TRIALS, trial)

    outcomes = asyncio.run(run())
    captures = _captures_by_setup_intent(two_workers)
    for si, final in outcomes:
        assert captures.get(si, 0) == (1 if final == "Completed" else 0), (si, final)
    assert {final for _, final in outcomes} <= {"Completed", "Closed"}


def test_a_charge_racing_the_card_expiry_and_the_payment_intent_expiry(
    two_workers: Server,
) -> None:
    """Each trial on its own account, whose clock a concurrent request moves past a boundary."""
    now = datetime.now(UTC)
    this_month = now.strftime("%m/%y")  # good until the end of this month
    keys = two_workers.create_accounts(2 * CLOCK_TRIALS)

    async def run() -> list[tuple[str, str, str, str]]:
        async def trial(i: int) -> tuple[str, str, str, str]:
            card_key, pi_key = keys[2 * i], keys[2 * i + 1]
            async with Racer([two_workers.api_url], two_workers.pci_url, card_key) as racer:
                si = await racer.authorized_si(expiry=this_month)
                pi = await racer.create_pi(si)
                days = 40 * 86_400  # past the end of this month, not past the 30-day expiry
                await asyncio.gather(
                    racer.charge(pi),
                    racer.api().post("/sandbox/clock/advance", json={"seconds": days}),
                )
                card_si = (await racer.get(f"/setup-intents/{si}"))["status"]
            async with Racer([two_workers.api_url], two_workers.pci_url, pi_key) as racer:
                si2 = await racer.authorized_si()
                pi2 = await racer.create_pi(si2, expireAt=_in(seconds=60))
                await asyncio.gather(
                    racer.charge(pi2),
                    racer.api().post("/sandbox/clock/advance", json={"seconds": 61}),
                )
                r = await racer.api().get(f"/payment-intents/{pi2}?returnCanceled=true")
                assert r.status_code == 200, r.text
                expired_pi = r.json()["status"]
            return si, card_si, si2, expired_pi

        return await _trials(CLOCK_TRIALS, trial)

    outcomes = asyncio.run(run())
    captures = _captures_by_setup_intent(two_workers)
    for si, card_status, si2, pi_status in outcomes:
        assert card_status in ("Completed", "CardExpired"), card_status
        assert captures.get(si, 0) == (1 if card_status == "Completed" else 0), (si, card_status)
        assert pi_status in ("Captured", "Canceled"), pi_status
        assert captures.get(si2, 0) == (1 if pi_status == "Captured" else 0), (si2, pi_status)


def _in(*, seconds: int) -> str:
    from datetime import timedelta

    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
