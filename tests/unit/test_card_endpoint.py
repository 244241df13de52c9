"""The hosted page's card endpoint, ``POST /setup-intents/public/{id}/card`` on the PCI listener
(CONTRACT §4.6, §9), in process: a setup intent created on the API listener gets its card with the
client session secret; the secret's rules (single use, 30 minutes, five failed attempts, never an
account key); and Dojo's own flow through to a charge."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.merchant import DECLINED_CARD as DECLINED
from tests.merchant import SI_FIELDS, card
from tests.world import World


@pytest.fixture
def world() -> World:
    return World()


def _created(world: World) -> tuple[str, str]:
    api, _ = world.clients()
    r = api.post("/setup-intents", json=SI_FIELDS)
    assert r.status_code == 200, r.text
    return r.json()["id"], r.json()["clientSessionSecret"]


def _submit(
    world: World, si_id: str, secret: str, pan: str | None = None, **body: Any
) -> httpx.Response:
    _, pci = world.bare_clients()
    payload = {"cardDetails": card(pan) if pan else card(), "mitConsentGiven": True, **body}
    headers = {"Authorization": f"Basic {secret}", "version": "2025-09-10"}
    return pci.post(f"/setup-intents/public/{si_id}/card", json=payload, headers=headers)


def _code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, str(r.json().get("code"))


def test_dojos_flow_card_through_the_page_endpoint_then_charge(world: World) -> None:
    si_id, secret = _created(world)
    r = _submit(world, si_id, secret)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Authorized"
    assert "setupEvents" not in r.json()  # the public shape
    api, _ = world.clients()
    assert api.get(f"/setup-intents/{si_id}").json()["status"] == "Authorized"
    pi = api.post(
        "/payment-intents",
        json={
            "amount": {"value": 1000, "currencyCode": "GBP"},
            "reference": "fee",
            "setupIntentId": si_id,
        },
    ).json()
    assert api.post(f"/payment-intents/{pi['id']}/charge").json()["status"] == "Successful"
    assert ("setup_intent.status_updated", "Authorized") in world.events()
    assert _code(_submit(world, si_id, secret)) == (401, "client_session_secret_used")


def test_declines_keep_it_created_and_the_fifth_consumes_the_secret(world: World) -> None:
    si_id, secret = _created(world)
    for _ in range(4):
        r = _submit(world, si_id, secret, DECLINED)
        assert (r.status_code, r.json()["status"]) == (200, "Created")
    bad = _submit(world, si_id, secret, cardDetails={"cardNumber": "4111"})  # not an attempt
    assert _code(bad) == (400, "validation_error")
    assert _submit(world, si_id, secret, DECLINED).json()["status"] == "Created"  # the fifth
    assert _code(_submit(world, si_id, secret)) == (401, "client_session_secret_used")
    world_si = world.storage.tables.setup_intents[si_id]
    assert world_si.secret is not None
    assert (world_si.secret.failed_attempts, world_si.secret.used) == (5, True)
    assert len(world_si.setup_events) == 5


def test_an_expired_card_is_card_expired_and_a_failed_attempt(world: World) -> None:
    si_id, secret = _created(world)
    r = _submit(world, si_id, secret, cardDetails=card(expiry="01/20"))
    assert (r.status_code, r.json()["status"]) == (200, "CardExpired"), r.text
    stored = world.storage.tables.setup_intents[si_id]
    assert stored.secret is not None
    assert stored.secret.failed_attempts == 1
    assert not world.storage.tables.vault  # no card kept


def test_wrong_expired_or_missing_secrets_and_account_keys_are_refused(world: World) -> None:
    si_id, secret = _created(world)
    assert _code(_submit(world, si_id, "not-the-secret")) == (401, "client_session_secret_invalid")
    assert _code(_submit(world, "si_sandbox_AAAAAAAAAAAAAAAAAAAAAA", secret)) == (
        401,
        "client_session_secret_invalid",
    )
    assert _code(_submit(world, si_id, world.key)) == (401, "client_session_secret_invalid")
    _, pci = world.bare_clients()
    anonymous = pci.post(
        f"/setup-intents/public/{si_id}/card",
        json={"cardDetails": card(), "mitConsentGiven": True},
        headers={"version": "2025-09-10"},
    )
    assert anonymous.status_code == 401
    world.advance(minutes=31)
    assert _code(_submit(world, si_id, secret)) == (401, "client_session_secret_expired")
    assert world.storage.tables.setup_intents[si_id].status.value == "Created"


def test_consent_is_required(world: World) -> None:
    si_id, secret = _created(world)
    _, pci = world.bare_clients()
    headers = {"Authorization": f"Basic {secret}", "version": "2025-09-10"}
    path = f"/setup-intents/public/{si_id}/card"
    for body in ({"cardDetails": card()}, {"cardDetails": card(), "mitConsentGiven": False}):
        r = pci.post(path, json=body, headers=headers)
        assert _code(r) == (400, "validation_error"), r.text
        assert "MitConsentGiven" in r.json()["errors"]
    assert world.storage.tables.setup_intents[si_id].secret is not None


def test_a_canceled_intent_takes_no_card(world: World) -> None:
    si_id, secret = _created(world)
    api, _ = world.clients()
    assert api.delete(f"/setup-intents/{si_id}").json()["status"] == "Canceled"
    assert _submit(world, si_id, secret).status_code == 401
