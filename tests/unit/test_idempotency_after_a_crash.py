"""A request with an Idempotency-Key whose change committed but whose key was never completed (the
process died in between): the retry, once the lease has run out, must answer from what the first
run did — never make a second object or apply the change twice (CONTRACT §6).

The crash is simulated in process: the step that completes the key after the handler returns
fails, as if the process had died there; the change itself has committed. Then real time passes
the lease and the merchant retries with the same key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from cardkeep.config import SettingsError, from_env
from cardkeep.domain.errors import IdempotencyInProgress
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.service.idempotency import LEASE, Begin, Idempotency, RecoveryPoint
from cardkeep.service.setup_intents import NewSetupIntent
from cardkeep.web.idempotency import HeldKey, Seal
from tests.merchant import SI_FIELDS, card
from tests.world import SyncClient, World


class Crash(Exception):
    """The process died after the change committed, before the key was completed."""


@pytest.fixture
def world() -> World:
    return World()


def _crash_on_finish(world: World, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make completing a key fail (both listeners) until the returned function is called."""
    sides: list[Idempotency] = [world.api.services.idempotency, world.pci.services.idempotency]

    def crash(*_: Any) -> None:
        raise Crash

    for each in sides:
        monkeypatch.setattr(each, "finish", crash)

    def restart() -> None:
        for each in sides:
            monkeypatch.delattr(each, "finish")

    return restart


def post(
    client: SyncClient, path: str, key: str, body: Any = None, **headers: str
) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    return client.post(path, content=content, headers={"Idempotency-Key": key, **headers})


def _retried(
    world: World, monkeypatch: pytest.MonkeyPatch, send: Callable[[], httpx.Response]
) -> tuple[httpx.Response, httpx.Response]:
    """The first answer (its key never completed) and the retry's, after the lease ran out."""
    restart = _crash_on_finish(world, monkeypatch)
    first = send()
    assert first.status_code == 200, first.text
    restart()
    world.advance(seconds=LEASE.total_seconds() + 1)
    again = send()
    assert again.status_code == 200, again.text
    return first, again


def _replayed(first: httpx.Response, again: httpx.Response) -> None:
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()


def test_an_api_setup_intent_create_is_not_run_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = world.clients()
    first, again = _retried(
        world, monkeypatch, lambda: post(api, "/setup-intents", "k1", SI_FIELDS)
    )
    _replayed(first, again)  # the same intent, and its client session secret again
    assert list(world.storage.tables.setup_intents) == [first.json()["id"]]
    secret = first.json()["clientSessionSecret"]
    public = api.get(
        f"/setup-intents/public/{first.json()['id']}", headers={"Authorization": f"Basic {secret}"}
    )
    assert public.status_code == 200, public.text


def test_a_pci_setup_intent_create_is_not_run_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pci = world.clients()
    body = {**SI_FIELDS, "cardDetails": card()}
    first, again = _retried(world, monkeypatch, lambda: post(pci, "/setup-intents", "k1", body))
    _replayed(first, again)
    assert list(world.storage.tables.setup_intents) == [first.json()["id"]]
    assert len(world.storage.tables.vault) == 1


def test_a_payment_intent_create_is_not_run_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = world.clients()
    si_id = world.authorized()
    amount = {"value": 1000, "currencyCode": "GBP"}
    body = {"amount": amount, "reference": "fee", "setupIntentId": si_id}
    first, again = _retried(world, monkeypatch, lambda: post(api, "/payment-intents", "k1", body))
    _replayed(first, again)
    assert list(world.storage.tables.payment_intents) == [first.json()["id"]]


def test_webhook_subscription_writes_are_not_run_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = world.clients()
    body = {"events": ["setup_intent.created"], "url": "http://localhost:9/hook"}
    first, again = _retried(world, monkeypatch, lambda: post(api, "/webhooks", "k1", body))
    _replayed(first, again)  # one subscription, and the secret that works
    assert list(world.storage.tables.subscriptions) == [first.json()["id"]]
    path = f"/webhooks/{first.json()['id']}/secrets"
    first, again = _retried(world, monkeypatch, lambda: post(api, path, "k2"))
    _replayed(first, again)
    assert len(api.get(path).json()["secrets"]) == 2  # not a conflict: one secret was added


def test_a_secret_refresh_is_not_run_twice(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    api, _ = world.clients()
    si_id = api.post("/setup-intents", json=SI_FIELDS).json()["id"]
    path = f"/setup-intents/{si_id}/refresh-client-session-secret"
    first, again = _retried(world, monkeypatch, lambda: post(api, path, "k1"))
    _replayed(first, again)  # the secret the merchant never saw is the one that works
    secret = again.json()["clientSessionSecret"]
    public = api.get(f"/setup-intents/public/{si_id}", headers={"Authorization": f"Basic {secret}"})
    assert public.status_code == 200, public.text


def test_a_public_secret_refresh_is_not_run_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = world.clients()
    created = api.post("/setup-intents", json=SI_FIELDS).json()
    path = f"/setup-intents/public/{created['id']}/refresh-client-session-secret"
    browser, _ = world.bare_clients()
    auth = {"Authorization": f"Basic {created['clientSessionSecret']}", "version": "2025-09-10"}
    first, again = _retried(world, monkeypatch, lambda: post(browser, path, "k1", None, **auth))
    _replayed(first, again)


def test_a_sandbox_clock_advance_is_not_applied_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = world.clients()
    first, again = _retried(
        world, monkeypatch, lambda: post(api, "/sandbox/clock/advance", "k1", {"seconds": 3600})
    )
    _replayed(first, again)
    assert world.storage.tables.accounts[world.account.id].clock_offset_us == 3600 * 10**6


def test_a_charge_retried_after_its_key_was_lost_gets_its_answer_and_charges_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = world.clients()
    pi_id = world.pi(world.authorized())
    path = f"/payment-intents/{pi_id}/charge"
    first, again = _retried(world, monkeypatch, lambda: post(api, path, "k1"))
    assert (
        again.json()
        == first.json()
        == {
            "paymentIntentId": pi_id,
            "status": "Successful",
            "message": "DEPOSITED",
        }
    )
    assert world.acquirer.times_sent(f"charge:{pi_id}:1") == 1  # type: ignore[attr-defined]
    assert list(world.storage.tables.sandbox_ledger) == [f"charge:{pi_id}:1"]


@pytest.mark.parametrize("lease", [None, "2"])
def test_a_lease_that_ran_out_before_the_change_committed_lets_the_retry_run(
    lease: str | None,
) -> None:
    """The other side of the crash: the process died before the change committed, so nothing
    was made, and once its lease (``CARDKEEP_IDEMPOTENCY_LEASE``, 60 s by default) is over the
    retry makes it, once."""
    env = {} if lease is None else {"CARDKEEP_IDEMPOTENCY_LEASE": lease}
    settings = replace(from_env(env), data_dir=Path("/nonexistent"), card_schemes=("VISA",))
    world = World(settings=settings)
    seconds = float(lease or LEASE.total_seconds())
    api, _ = world.clients()
    scope, fingerprint = world.account.id, _fingerprint(world, "/setup-intents", SI_FIELDS)
    # What the process that died left: the running key, no setup intent.
    assert world.api.services.idempotency.begin(scope, "k1", fingerprint).outcome is Begin.RUN
    world.advance(seconds=seconds - 0.5)
    held = post(api, "/setup-intents", "k1", SI_FIELDS)
    assert held.json()["code"] == "idempotency_in_progress"
    world.advance(seconds=1)
    ran = post(api, "/setup-intents", "k1", SI_FIELDS)
    assert ran.status_code == 200, ran.text
    assert "idempotent-replayed" not in ran.headers
    _replayed(ran, post(api, "/setup-intents", "k1", SI_FIELDS))
    assert list(world.storage.tables.setup_intents) == [ran.json()["id"]]


def test_the_lease_setting_is_seconds_between_0_and_a_day() -> None:
    assert from_env({"CARDKEEP_IDEMPOTENCY_LEASE": "0.5"}).idempotency_lease == 0.5
    for bad in ("0", "x", "86400"):
        with pytest.raises(SettingsError, match="IDEMPOTENCY_LEASE"):
            from_env({"CARDKEEP_IDEMPOTENCY_LEASE": bad})


def _fingerprint(world: World, path: str, body: Any) -> str:
    return Seal(world.idempotency_secret).fingerprint("POST", path, body)


def test_a_run_whose_key_another_run_answered_meanwhile_rolls_its_change_back(
    world: World,
) -> None:
    """Two runs of one request (the first one's lease ran out while it ran, so a retry took the
    key over): the first to commit answers the key; the other's create rolls back with 409."""
    scope, fingerprint = world.account.id, _fingerprint(world, "/setup-intents", SI_FIELDS)
    now = world.clock.now()
    with world.storage.transaction(write=True) as uow:
        assert uow.idempotency.claim(scope, "k1", fingerprint, now, now + LEASE)
        uow.commit()
    held = HeldKey(Seal(world.idempotency_secret), scope, "k1", fingerprint)
    point: RecoveryPoint[tuple[SetupIntent, str]] = held.point(lambda made: {"id": made[0].id})
    cmd = NewSetupIntent("ref", "terms", "NoShow")
    sis = world.services.setup_intents
    first, _ = sis.create(world.account, cmd, point)
    with pytest.raises(IdempotencyInProgress):
        sis.create(world.account, cmd, point)
    assert list(world.storage.tables.setup_intents) == [first.id]
    assert [e.data["setupIntentId"] for e in world.storage.tables.outbox] == [first.id]


def test_a_key_past_retention_is_a_new_key_and_before_it_another_request_is_422(
    world: World,
) -> None:
    api, _ = world.clients()
    first = post(api, "/setup-intents", "k1", SI_FIELDS)
    other = {**SI_FIELDS, "reference": "other"}
    assert post(api, "/setup-intents", "k1", other).json()["code"] == "idempotency_key_mismatch"
    world.advance(hours=24, seconds=1)  # retention is over: the key is free again
    again = post(api, "/setup-intents", "k1", other)
    assert again.status_code == 200, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
