"""Dojo's own flow over real HTTP, on both engines: a setup intent created on the API listener,
the customer's card through the hosted page's endpoint with the client session secret, then a
payment intent and a charge with no cardkeep-specific call. The answer is Dojo's
SetupIntentPublicResponse; neither the card number nor the CV2 is stored in clear."""

from __future__ import annotations

from tests.contract.schemas import errors_of
from tests.e2e.harness import APPROVED_CARD, SI_FIELDS, Merchant, Server, card, http_client

CVV = "742"


def test_an_api_created_setup_intent_gets_its_card_through_the_page_endpoint(
    merchant: Merchant, server: Server
) -> None:
    created = merchant.api.post("/setup-intents", json=SI_FIELDS).json()
    headers = {"Authorization": f"Basic {created['clientSessionSecret']}", "version": "2025-09-10"}
    body = {"cardDetails": card(cv2=CVV), "mitConsentGiven": True}
    with http_client(server.pci_url, headers) as page:
        r = page.post(f"/setup-intents/public/{created['id']}/card", json=body)
        assert r.status_code == 200, r.text
        assert not errors_of("SetupIntentPublicResponse", r.json()), r.json()
        assert r.json()["status"] == "Authorized"
        again = page.post(f"/setup-intents/public/{created['id']}/card", json=body)
        assert (again.status_code, again.json()["code"]) == (401, "client_session_secret_used")
    pi = merchant.create_pi(created["id"]).json()
    assert merchant.charge(pi["id"]).json()["status"] == "Successful"
    assert merchant.get_si(created["id"]).json()["status"] == "Completed"
    stored = server.stored_bytes()
    assert APPROVED_CARD.encode() not in stored
    assert f'"{CVV}"'.encode() not in stored
    assert APPROVED_CARD not in server.log_text()
