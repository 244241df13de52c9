"""Acceptance 2: every setup-intent status is reachable through the API, and the rules around
each (DELETE, clock-driven expiry, card expiry while Authorized)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from tests.e2e.harness import DECLINED_CARD, Merchant, Server, card

DAY = 86_400


def test_created_via_api_with_client_session_secret(merchant: Merchant) -> None:
    r = merchant.create_si()
    assert r.status_code == 200, r.text
    si = r.json()
    assert si["status"] == "Created"
    assert len(si["clientSessionSecret"]) >= 43
    assert si["clientSessionSecretExpirationDate"].endswith("Z")
    assert "." not in si["clientSessionSecretExpirationDate"]
    got = merchant.get_si(si["id"]).json()
    assert got["status"] == "Created"
    assert "clientSessionSecret" not in got


def test_declined_card_leaves_it_created_with_a_declined_event(merchant: Merchant) -> None:
    r = merchant.pci_create(card(DECLINED_CARD))
    assert r.status_code == 200, r.text
    si = r.json()
    assert si["status"] == "Created"
    assert si["paymentDetails"]["message"] == "Do not honour"
    assert si["setupEvents"][-1]["eventType"] == "Declined"
    assert si["setupEvents"][-1]["cardNumber"] == "400000******0002"


def test_authorized_then_completed_by_a_charge(merchant: Merchant) -> None:
    si = merchant.authorized_si()
    pi = merchant.create_pi(si["id"]).json()
    assert merchant.charge(pi["id"]).json()["status"] == "Successful"
    assert merchant.get_si(si["id"]).json()["status"] == "Completed"
    r = merchant.api.delete(f"/setup-intents/{si['id']}?includeAuthorized=true")
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_state"


def test_expired_when_the_account_clock_passes_expire_at(merchant: Merchant) -> None:
    si = merchant.create_si().json()
    assert merchant.advance(30 * DAY - 60).status_code == 200
    assert merchant.get_si(si["id"]).json()["status"] == "Created"
    merchant.advance(120)
    assert merchant.get_si(si["id"]).json()["status"] == "Expired"
    r = merchant.api.delete(f"/setup-intents/{si['id']}")
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_state"


def test_expired_is_persisted_by_the_sweeper_without_any_read(
    merchant: Merchant, server: Server
) -> None:
    si = merchant.create_si().json()
    merchant.advance(31 * DAY)
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        status = server.sql("SELECT status FROM setup_intents WHERE id = ?", (si["id"],))[0][0]
        if status == "Expired":
            break
        time.sleep(0.1)
    assert status == "Expired"


def test_card_expired_at_create(merchant: Merchant) -> None:
    r = merchant.pci_create(card(expiry="01/20"))
    assert r.status_code == 200, r.text
    si = r.json()
    assert si["status"] == "CardExpired"
    assert si["paymentDetails"]["message"] == "Card expired"
    assert si["setupEvents"][-1]["eventType"] == "Declined"
    assert merchant.create_pi(si["id"]).json()["code"] == "setup_intent_not_usable"


def _card_expiring_this_month(merchant: Merchant) -> tuple[str, int]:
    """An expiry date in the account clock's current month, and the seconds until it passes."""
    now = datetime.fromisoformat(merchant.api.get("/sandbox/clock").json()["now"])
    first_next = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
    return f"{now.month:02d}/{now.year % 100:02d}", int((first_next - now).total_seconds()) + 60


def test_card_expiring_while_authorized(merchant: Merchant) -> None:
    expiry, until_expired = _card_expiring_this_month(merchant)
    si = merchant.pci_create(card(expiry=expiry)).json()
    assert si["status"] == "Authorized"
    merchant.advance(until_expired)
    assert merchant.get_si(si["id"]).json()["status"] == "CardExpired"
    assert merchant.create_pi(si["id"]).json()["code"] == "setup_intent_not_usable"


def test_charge_after_the_card_expired_is_declined_and_never_sent(merchant: Merchant) -> None:
    expiry, until_expired = _card_expiring_this_month(merchant)
    si = merchant.pci_create(card(expiry=expiry)).json()
    pi = merchant.create_pi(si["id"]).json()
    merchant.advance(until_expired)
    r = merchant.charge(pi["id"])
    assert r.status_code == 200, r.text
    assert r.json() == {
        "paymentIntentId": pi["id"],
        "status": "Declined",
        "message": "Card expired",
    }
    assert merchant.get_si(si["id"]).json()["status"] == "CardExpired"
    after = merchant.api.get(f"/payment-intents/{pi['id']}").json()
    assert after["status"] == "Created"
    assert after["paymentEvents"][-1]["eventType"] == "Declined"


def test_canceled_and_repeat_delete(merchant: Merchant) -> None:
    si = merchant.create_si().json()
    first = merchant.api.delete(f"/setup-intents/{si['id']}")
    assert first.status_code == 200
    assert first.json()["status"] == "Canceled"
    again = merchant.api.delete(f"/setup-intents/{si['id']}")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert merchant.get_si(si["id"]).json()["status"] == "Canceled"


def test_closed_needs_include_authorized(merchant: Merchant, server: Server) -> None:
    si = merchant.authorized_si()
    refused = merchant.api.delete(f"/setup-intents/{si['id']}")
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_state"
    assert "includeAuthorized" in refused.json()["detail"]
    assert merchant.get_si(si["id"]).json()["status"] == "Authorized"

    closed = merchant.api.delete(f"/setup-intents/{si['id']}?includeAuthorized=TRUE")
    assert closed.status_code == 200
    assert closed.json()["status"] == "Closed"
    assert merchant.get_si(si["id"]).json()["status"] == "Closed"
    again = merchant.api.delete(f"/setup-intents/{si['id']}?includeAuthorized=true")
    assert again.status_code == 200
    assert again.json()["status"] == "Closed"
    # The card left the vault with the close.
    left = server.sql(
        "SELECT count(*) FROM vault_cards WHERE account_id ="
        " (SELECT account_id FROM setup_intents WHERE id = ?)",
        (si["id"],),
    )[0][0]
    assert left == 0  # the merchant's only card
    assert merchant.create_pi(si["id"]).json()["code"] == "setup_intent_not_usable"


def test_declined_and_failed_charges_keep_both_usable(merchant: Merchant) -> None:
    si = merchant.authorized_si()
    for amount, status, message in (
        (1051, "Declined", "Insufficient funds"),
        (1005, "Declined", "Do not honour"),
        (1098, "Failed", "Acquirer unavailable"),
    ):
        pi = merchant.create_pi(si["id"], amount).json()
        r = merchant.charge(pi["id"])
        assert r.status_code == 200, r.text
        assert r.json() == {"paymentIntentId": pi["id"], "status": status, "message": message}
        assert merchant.api.get(f"/payment-intents/{pi['id']}").json()["status"] == "Created"
        assert merchant.get_si(si["id"]).json()["status"] == "Authorized"
    pi = merchant.create_pi(si["id"], 1000).json()
    assert merchant.charge(pi["id"]).json()["status"] == "Successful"


def test_unknown_outcome_is_503_then_settled_once_by_recovery(merchant: Merchant) -> None:
    si = merchant.authorized_si()
    pi = merchant.create_pi(si["id"], 1099).json()
    r = merchant.charge(pi["id"])
    assert r.status_code == 503
    assert r.json()["code"] == "service_unavailable"
    assert r.headers["Retry-After"]
    # While the outcome is unknown, reads show the public statuses and a retry is refused.
    assert merchant.api.get(f"/payment-intents/{pi['id']}").json()["status"] == "Created"
    retry = merchant.charge(pi["id"])
    assert retry.status_code in (409, 400)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if merchant.api.get(f"/payment-intents/{pi['id']}").json()["status"] == "Captured":
            break
        time.sleep(0.2)
    assert merchant.api.get(f"/payment-intents/{pi['id']}").json()["status"] == "Captured"
    assert merchant.get_si(si["id"]).json()["status"] == "Completed"


def test_payment_intent_cancel_and_return_canceled(merchant: Merchant) -> None:
    si = merchant.authorized_si()
    pi = merchant.create_pi(si["id"]).json()
    r = merchant.api.delete(f"/payment-intents/{pi['id']}")
    assert r.status_code == 200
    assert r.json()["status"] == "Canceled"
    assert merchant.api.get(f"/payment-intents/{pi['id']}").status_code == 404
    shown = merchant.api.get(f"/payment-intents/{pi['id']}?returnCanceled=true")
    assert shown.json()["status"] == "Canceled"
    old = merchant.api.get(f"/payment-intents/{pi['id']}", headers={"version": "2022-04-07"})
    assert old.status_code == 200
    assert merchant.get_si(si["id"]).json()["status"] == "Authorized"
    assert merchant.charge(pi["id"]).json()["code"] == "invalid_state"


def test_errors_after_the_version_is_resolved_carry_it_too(merchant: Merchant) -> None:
    r = merchant.api.get("/setup-intents/si_sandbox_nope", headers={"version": "2026-02-27"})
    assert r.status_code == 404
    assert r.headers["version"] == "2025-09-10"
    assert "version" not in merchant.api.get("/setup-intents/x", headers={"version": "bad"}).headers
