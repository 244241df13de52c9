"""Dojo's own flow with the card typed into the hosted page by a real browser, on both engines:
a setup intent created on the API listener with plain Dojo fields, the customer's card through
the page top-level, then a payment intent and a charge with the account key; the charge
succeeds and the setup intent is Completed."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.browser.parent_site import APPROVED, fill_card, wait_outcome
from tests.e2e.harness import SI_FIELDS, Merchant, Server


def test_a_card_saved_through_the_page_is_charged_later(
    page: Page, server: Server, merchant: Merchant
) -> None:
    created = merchant.api.post("/setup-intents", json=SI_FIELDS)
    assert created.status_code == 200, created.text
    si = created.json()
    page.goto(f"{server.pci_url}/setup/{si['id']}?clientSessionSecret={si['clientSessionSecret']}")
    fill_card(page, APPROVED)
    page.locator("#submit").click()
    assert wait_outcome(page) == ("authorized", "Authorized")
    expect(page.locator("#result")).not_to_be_empty()
    assert merchant.get_si(si["id"]).json()["status"] == "Authorized"

    pi = merchant.create_pi(si["id"])
    assert pi.status_code == 200, pi.text
    charged = merchant.charge(pi.json()["id"])
    assert charged.status_code == 200, charged.text
    assert charged.json()["status"] == "Successful"
    assert merchant.get_si(si["id"]).json()["status"] == "Completed"
    assert APPROVED.replace(" ", "") not in server.log_text()
