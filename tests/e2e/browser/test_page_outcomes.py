"""The hosted card page in a real browser, top-level: what it shows, what it checks before
sending anything, and how a decline or an expired card reads on the page while the setup intent
moves as the contract says (declined: still Created, the customer can retry; expired card:
CardExpired, the form gone)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, Request, expect

from tests.e2e.browser.parent_site import (
    APPROVED,
    APPROVED_2,
    DECLINED,
    DECLINED_FUNDS,
    PAST_EXPIRY,
    SHOP_NAME,
    ParentSite,
    Shop,
    clear_outcome,
    fill_card,
    plain_page,
    wait_outcome,
)
from tests.e2e.harness import SI_FIELDS


def card_posts(page: Page) -> list[Request]:
    """Every request the page sends to the card endpoint, from now on."""
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if "/card" in r.url else None)
    return sent


def test_the_page_shows_the_merchant_the_terms_and_the_amount_and_asks_for_consent(
    page: Page, shop: Shop
) -> None:
    si = shop.new_si()
    response = page.goto(shop.page_url(si))
    assert response is not None
    assert response.status == 200
    expect(page.locator("html")).to_have_attribute("lang", "en")
    body = page.locator("body")
    expect(body).to_contain_text(SHOP_NAME)
    expect(body).to_contain_text(SI_FIELDS["terms"])
    expect(body).to_contain_text(re.compile(r"£\s?10\.00|10\.00\s?GBP|GBP\s?10\.00"))
    expect(page.locator("#consent")).not_to_be_checked()
    for field, autocomplete in (
        ("#name", "cc-name"),
        ("#number", "cc-number"),
        ("#expiry", "cc-exp"),
        ("#cvv", "cc-csc"),
    ):
        expect(page.locator(field)).to_have_attribute("autocomplete", autocomplete)
        label = page.locator(f'label[for="{field[1:]}"]')
        expect(label).to_have_count(1)
    expect(page.locator("#number")).to_have_attribute("inputmode", "numeric")
    expect(page.locator("button#submit")).to_have_text(re.compile("Save card"))


def test_without_an_intended_amount_no_amount_is_shown(page: Page, shop: Shop) -> None:
    fields = {k: v for k, v in SI_FIELDS.items() if k != "intendedAmount"}
    si = shop.merchant.api.post("/setup-intents", json=fields).json()
    page.goto(shop.page_url(si))
    expect(page.locator("#card-form")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("10.00")


def test_the_number_is_grouped_by_four_and_its_brand_shown(page: Page, shop: Shop) -> None:
    page.goto(shop.page_url(shop.new_si()))
    page.locator("#number").press_sequentially(APPROVED.replace(" ", ""))
    expect(page.locator("#number")).to_have_value(APPROVED)
    expect(page.locator("#brand")).to_have_text(re.compile("Mastercard"))
    page.locator("#number").fill("")
    page.locator("#number").press_sequentially(DECLINED.replace(" ", ""))
    expect(page.locator("#number")).to_have_value(DECLINED)
    expect(page.locator("#brand")).to_have_text(re.compile("Visa"))


def test_nothing_is_sent_until_consent_is_given(page: Page, shop: Shop) -> None:
    si = shop.new_si()
    page.goto(shop.page_url(si))
    sent = card_posts(page)
    fill_card(page, APPROVED, consent=False)
    page.locator("#submit").click()
    expect(page.locator("#consent-error")).not_to_be_empty()
    expect(page.locator("#consent")).to_have_attribute("aria-invalid", "true")
    page.locator("#consent").check()
    page.locator("#submit").click()
    assert wait_outcome(page) == ("authorized", "Authorized")
    assert len(sent) == 1  # the unticked try sent nothing
    assert shop.status(si["id"]) == "Authorized"


def test_a_number_that_fails_luhn_is_caught_in_the_browser_and_nothing_is_sent(
    page: Page, shop: Shop
) -> None:
    si = shop.new_si()
    page.goto(shop.page_url(si))
    sent = card_posts(page)
    fill_card(page, "5200 0000 0000 1006")  # the approved card with its check digit broken
    page.locator("#submit").click()
    expect(page.locator("#number-error")).not_to_be_empty()
    expect(page.locator("#number")).to_have_attribute("aria-invalid", "true")
    fill_card(page, APPROVED, expiry="13/30")  # no 13th month
    page.locator("#submit").click()
    expect(page.locator("#expiry-error")).not_to_be_empty()
    expect(page.locator("#expiry")).to_have_attribute("aria-invalid", "true")
    fill_card(page, APPROVED, name="4000000000000002", cvv="1")  # a number for a name
    page.locator("#submit").click()
    expect(page.locator("#name-error")).not_to_be_empty()
    expect(page.locator("#cvv-error")).not_to_be_empty()
    assert sent == []
    assert shop.status(si["id"]) == "Created"


def test_a_decline_reads_as_one_and_the_customer_can_retry_with_another_card(
    page: Page, shop: Shop
) -> None:
    si = shop.new_si()
    page.goto(shop.page_url(si))
    fill_card(page, DECLINED)
    page.locator("#submit").click()
    assert wait_outcome(page) == ("declined", "Created")
    expect(page.locator("#form-error")).to_contain_text(re.compile("declined", re.I))
    expect(page.locator("#form-error")).to_have_attribute("role", "alert")
    expect(page.locator("#card-form")).to_be_visible()
    assert shop.status(si["id"]) == "Created"

    clear_outcome(page)
    fill_card(page, DECLINED_FUNDS)
    page.locator("#submit").click()
    assert wait_outcome(page) == ("declined", "Created")
    expect(page.locator("#form-error")).to_contain_text(re.compile("declined", re.I))

    clear_outcome(page)
    fill_card(page, APPROVED_2)
    page.locator("#submit").click()
    assert wait_outcome(page) == ("authorized", "Authorized")
    expect(page.locator("#result")).not_to_be_empty()
    expect(page.locator("#result")).to_have_attribute("role", "status")
    expect(page.locator("#card-form")).to_be_hidden()
    assert shop.status(si["id"]) == "Authorized"


def test_an_expired_card_reads_as_expired_and_ends_the_setup_intent(page: Page, shop: Shop) -> None:
    si = shop.new_si()
    page.goto(shop.page_url(si))
    fill_card(page, APPROVED, expiry=PAST_EXPIRY)
    page.locator("#submit").click()
    assert wait_outcome(page) == ("card_expired", "CardExpired")
    expect(page.locator("#form-error")).to_contain_text(re.compile("expired", re.I))
    expect(page.locator("#card-form")).to_be_hidden()
    assert shop.status(si["id"]) == "CardExpired"


def test_top_level_with_a_redirect_url_an_authorized_card_goes_back_to_the_merchant(
    page: Page, shop: Shop, allowed_site: ParentSite
) -> None:
    back = allowed_site.serve("/done", plain_page("Thank you"))
    si = shop.new_si(config={"redirectUrl": back})
    page.goto(shop.page_url(si))
    fill_card(page, APPROVED)
    page.locator("#submit").click()
    page.wait_for_url(re.compile(re.escape(back) + r"\?"))
    query = page.url.split("?", 1)[1]
    assert f"setupIntentId={si['id']}" in query.split("&")
    assert "status=Authorized" in query.split("&")
    assert shop.status(si["id"]) == "Authorized"


def test_an_expiry_typed_with_its_slash_reads_mm_yy(page: Page, shop: Shop) -> None:
    """A customer who types the slash themselves gets MM/YY too, not a doubled slash."""
    page.goto(shop.page_url(shop.new_si()))
    page.locator("#expiry").press_sequentially("12/30")
    expect(page.locator("#expiry")).to_have_value("12/30")
