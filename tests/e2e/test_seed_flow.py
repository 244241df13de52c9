"""Acceptance 1: the seed flow over real HTTP against a real SQLite file."""

from __future__ import annotations

from tests.e2e.harness import Merchant


def test_seed_flow_charges_exactly_once(merchant: Merchant) -> None:
    r = merchant.pci_create()
    assert r.status_code == 200, r.text
    si = r.json()
    assert si["status"] == "Authorized"
    assert si["id"].startswith("si_sandbox_")
    assert si["paymentDetails"]["card"]["cardNumber"] == "520000******1005"
    assert si["paymentDetails"]["card"]["last4PAN"] == "1005"
    assert si["setupEvents"][0]["eventType"] == "Authorized"
    assert "clientSessionSecret" not in si

    assert merchant.get_si(si["id"]).json()["status"] == "Authorized"

    r = merchant.create_pi(si["id"], 1000)
    assert r.status_code == 200, r.text
    pi = r.json()
    assert pi["status"] == "Created"
    assert pi["setupIntentId"] == si["id"]
    assert merchant.get_si(si["id"]).json()["status"] == "Authorized"

    second_pi = merchant.create_pi(si["id"], 500).json()

    r = merchant.api.post(f"/payment-intents/{pi['id']}/charge")
    assert r.status_code == 200, r.text
    assert r.json() == {"paymentIntentId": pi["id"], "status": "Successful", "message": "DEPOSITED"}

    assert merchant.get_si(si["id"]).json()["status"] == "Completed"
    captured = merchant.api.get(f"/payment-intents/{pi['id']}").json()
    assert captured["status"] == "Captured"
    assert captured["paymentDetails"]["card"]["cardNumber"] == "520000******1005"
    assert [e["eventType"] for e in captured["paymentEvents"]] == ["Captured"]

    again = merchant.charge(pi["id"])
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_state"

    other = merchant.charge(second_pi["id"])
    assert other.status_code == 400
    assert other.json()["code"] == "setup_intent_not_usable"

    late = merchant.create_pi(si["id"], 700)
    assert late.status_code == 400
    assert late.json()["code"] == "setup_intent_not_usable"
