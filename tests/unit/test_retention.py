"""Retention (``cardkeep purge``), in process over the in-memory storage: what a purge scrubs
from final intents, what it keeps for money and audit (a purged Captured payment intent is still
refunded), what it leaves alone (live or recent intents), the account's clock, dry runs, a second
run, and vault rows no live setup intent holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cardkeep.domain.setup_intent import Status as SI
from cardkeep.service.retention import PurgeReport, Retention
from tests.contract.schemas import errors_of
from tests.world import T0, SyncClient, World

NAME = "Ada Retentionmark"
EMAIL = "ada.retention@example.com"
STREET = "17 Purgeable Lane"
SHIP = "Shippingham Manor"
AGENT = "RetentionBrowser/1.0"
PERSONAL = (NAME, EMAIL, STREET, SHIP, AGENT, "520000******1005")
ADDRESS = {"address1": STREET, "city": "London", "postcode": "E1 6AN", "countryCode": "GB"}
PERSON = {
    "customer": {"emailAddress": EMAIL, "phoneNumber": "+441234567890"},
    "billingAddress": ADDRESS,
    "shippingDetails": {"name": SHIP, "address": ADDRESS},
    "metadata": {"booking": "B-42"},
}
DAYS_30 = timedelta(days=30)


@pytest.fixture
def world() -> World:
    return World()


def _si(pci: SyncClient, pan: str = "5200000000001005") -> str:
    body = {
        "reference": "Table 4",
        "merchantInitiatedTransactionType": "NoShow",
        "terms": "No-show fee.",
        "intendedAmount": {"value": 1000, "currencyCode": "GBP"},
        "cardDetails": {"cardNumber": pan, "cardName": NAME, "expiryDate": "12/35", "cv2": "020"},
        **PERSON,
    }
    r = pci.post("/setup-intents", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Authorized"
    return str(r.json()["id"])


def _pi(api: SyncClient, si: str, value: int = 1000) -> str:
    body = {
        "amount": {"value": value, "currencyCode": "GBP"},
        "reference": "No-show",
        "setupIntentId": si,
        "requestSecurity": {"userAgent": AGENT, "ipAddress": "192.0.2.7"},
        "itemLines": [
            {"id": "1", "caption": "Table", "amountTotal": {"value": value, "currencyCode": "GBP"}}
        ],
        **PERSON,
    }
    r = api.post("/payment-intents", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _get(api: SyncClient, path: str, schema: str) -> dict[str, Any]:
    r = api.get(path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert not errors_of(schema, body), errors_of(schema, body)
    return body


def _charged(world: World) -> tuple[str, str]:
    api, pci = world.clients()
    si = _si(pci)
    pi = _pi(api, si)
    assert api.post(f"/payment-intents/{pi}/charge").json()["status"] == "Successful"
    return si, pi


def _stored(world: World) -> str:
    return repr(world.storage.tables.setup_intents) + repr(world.storage.tables.payment_intents)


def test_a_purged_captured_payment_intent_keeps_its_money_and_can_still_be_refunded(
    world: World,
) -> None:
    api, _ = world.clients()
    si, pi = _charged(world)
    si_before = _get(api, f"/setup-intents/{si}", "SetupIntentResponse")
    pi_before = _get(api, f"/payment-intents/{pi}", "PaymentIntent")
    assert all(text in _stored(world) for text in PERSONAL)
    world.advance(days=31)

    report = Retention(world.storage, world.clock).purge(DAYS_30)

    assert report == PurgeReport(setup_intents=1, payment_intents=1, vault_cards=0)
    assert not any(text in _stored(world) for text in PERSONAL)
    si_after = _get(api, f"/setup-intents/{si}", "SetupIntentResponse")
    for key in ("customer", "billingAddress", "shippingDetails"):
        assert key not in si_after
    assert "card" not in si_after["paymentDetails"]
    assert all("cardNumber" not in e for e in si_after["setupEvents"])
    kept = ("id", "status", "reference", "terms", "intendedAmount", "metadata", "updatedAt")
    assert {k: si_after[k] for k in kept} == {k: si_before[k] for k in kept}
    assert (
        si_after["paymentDetails"]["transactionId"] == si_before["paymentDetails"]["transactionId"]
    )
    assert si_after["paymentDetails"]["authCode"] == si_before["paymentDetails"]["authCode"]
    pi_after = _get(api, f"/payment-intents/{pi}", "PaymentIntent")
    for key in ("customer", "billingAddress", "shippingDetails", "requestSecurity"):
        assert key not in pi_after
    assert "card" not in pi_after["paymentDetails"]
    kept = ("id", "status", "amount", "totalAmount", "refundedAmount", "itemLines", "metadata")
    assert {k: pi_after[k] for k in kept} == {k: pi_before[k] for k in kept}
    assert [
        (e["eventType"], e["transactionId"], e.get("authCode")) for e in pi_after["paymentEvents"]
    ] == [
        (e["eventType"], e["transactionId"], e.get("authCode")) for e in pi_before["paymentEvents"]
    ]
    assert world.storage.tables.payment_intents[pi].purged_at == world.clock.now()

    refund = api.post(
        f"/payment-intents/{pi}/refunds", json={"amount": 300}, headers={"idempotencyKey": "a"}
    )
    assert refund.status_code == 200, refund.text
    refunded = _get(api, f"/payment-intents/{pi}", "PaymentIntent")
    assert (refunded["status"], refunded["refundedAmount"]) == ("Captured", 300)
    assert refunded["paymentEvents"][-1]["eventType"] == "Refunded"
    assert "cardNumber" not in refunded["paymentEvents"][-1]
    rest = api.post(
        f"/payment-intents/{pi}/refunds", json={"amount": 700}, headers={"idempotencyKey": "b"}
    )
    assert rest.status_code == 200, rest.text
    assert _get(api, f"/payment-intents/{pi}", "PaymentIntent")["status"] == "Refunded"

    again = Retention(world.storage, world.clock).purge(DAYS_30)
    assert again == PurgeReport(0, 0, 0)  # purged once: a second run changes nothing


def test_live_and_recent_intents_are_left_alone_and_a_dry_run_changes_nothing(
    world: World,
) -> None:
    api, pci = world.clients()
    live_si = _si(pci)
    canceled = api.post(
        "/setup-intents",
        json={"reference": "r", "merchantInitiatedTransactionType": "NoShow", "terms": "t"},
    ).json()["id"]
    assert api.delete(f"/setup-intents/{canceled}").json()["status"] == "Canceled"
    world.advance(days=20)
    done_si, done_pi = _charged(world)  # changed 20 days after the others
    created_pi = _pi(api, live_si)
    world.advance(days=11)
    before = dict(world.storage.tables.setup_intents), dict(world.storage.tables.payment_intents)
    retention = Retention(world.storage, world.clock, batch=1)

    dry = retention.purge(DAYS_30, dry_run=True)

    assert dry == PurgeReport(setup_intents=1, payment_intents=0, vault_cards=0)  # canceled
    assert (world.storage.tables.setup_intents, world.storage.tables.payment_intents) == before
    assert retention.purge(DAYS_30) == dry
    tables = world.storage.tables
    assert tables.setup_intents[canceled].purged_at is not None
    for untouched in (live_si, done_si):
        assert tables.setup_intents[untouched] == before[0][untouched]
    for untouched in (created_pi, done_pi):
        assert tables.payment_intents[untouched] == before[1][untouched]
    assert tables.setup_intents[live_si].status is SI.AUTHORIZED
    assert retention.purge(timedelta(days=10)) == PurgeReport(1, 1, 0)  # the charged pair
    assert tables.setup_intents[live_si] == before[0][live_si]  # Authorized: never
    assert tables.payment_intents[created_pi] == before[1][created_pi]  # Created: never
    assert _get(api, f"/payment-intents/{created_pi}", "PaymentIntent")["customer"]
    assert api.post(f"/payment-intents/{created_pi}/charge").json()["status"] == "Successful"


def test_age_is_measured_on_the_accounts_clock(world: World) -> None:
    api, _ = world.clients()
    si, pi = _charged(world)
    retention = Retention(world.storage, world.clock)
    assert retention.purge(DAYS_30) == PurgeReport(0, 0, 0)
    assert world.storage.tables.payment_intents[pi].purged_at is None
    moved = api.post("/sandbox/clock/advance", json={"seconds": 31 * 86_400})
    assert moved.status_code == 200, moved.text
    assert world.clock.now() == T0  # real time did not move
    assert retention.purge(DAYS_30) == PurgeReport(1, 1, 0)
    assert world.storage.tables.setup_intents[si].purged_at == T0 + timedelta(days=31)


def test_vault_rows_no_live_setup_intent_holds_are_deleted(world: World) -> None:
    api, pci = world.clients()
    live = _si(pci)
    held = _si(pci, "5200000000000056")
    token = world.storage.tables.setup_intents[held].vault_token
    assert token is not None
    row = world.storage.tables.vault[token]
    assert api.delete(f"/setup-intents/{held}?includeAuthorized=true").json()["status"] == "Closed"
    assert token not in world.storage.tables.vault  # forgotten when it closed
    with world.storage.transaction(write=True) as uow:
        uow.vault.put(row)  # a leftover: its setup intent is Closed
        uow.vault.put(("vt_orphan", world.account.id, *row[2:]))  # no setup intent at all
        uow.commit()
    retention = Retention(world.storage, world.clock, batch=1)

    assert retention.purge(DAYS_30, dry_run=True).vault_cards == 2
    assert len(world.storage.tables.vault) == 3
    assert retention.purge(DAYS_30) == PurgeReport(
        setup_intents=0, payment_intents=0, vault_cards=2
    )

    live_token = world.storage.tables.setup_intents[live].vault_token
    assert set(world.storage.tables.vault) == {live_token}
    pi = _pi(api, live)
    assert api.post(f"/payment-intents/{pi}/charge").json()["status"] == "Successful"
