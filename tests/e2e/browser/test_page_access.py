"""The hosted card page for everyone: filled in and submitted with the keyboard alone, no
serious or critical axe-core violation on the form or on the invalid-link page, and no sideways
scrolling on a 320 px wide screen, before and after an error is shown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.browser.parent_site import (
    APPROVED,
    CVV,
    DECLINED,
    FUTURE_EXPIRY,
    ParentSite,
    Shop,
    checkout_page,
    fill_card,
    wait_outcome,
)

NARROW = {"width": 320, "height": 640}


def test_the_card_is_saved_with_the_keyboard_alone_inside_the_merchant_s_frame(
    page: Page, shop: Shop, allowed_site: ParentSite
) -> None:
    si = shop.new_si()
    page.goto(allowed_site.serve("/checkout", checkout_page(shop.page_url(si))))
    card = page.frame_locator("#card")
    expect(card.locator("#card-form")).to_be_visible()
    # From the parent page's top: the first Tab enters the frame and lands on the first field.
    kb = page.keyboard
    kb.press("Tab")
    expect(card.locator("#name")).to_be_focused()
    kb.type("Test Cardholder")
    kb.press("Tab")
    expect(card.locator("#number")).to_be_focused()
    kb.type(APPROVED.replace(" ", ""))
    kb.press("Tab")
    expect(card.locator("#expiry")).to_be_focused()
    kb.type(FUTURE_EXPIRY.replace("/", ""))
    expect(card.locator("#expiry")).to_have_value(FUTURE_EXPIRY)
    kb.press("Tab")
    expect(card.locator("#cvv")).to_be_focused()
    kb.type(CVV)
    kb.press("Tab")
    expect(card.locator("#consent")).to_be_focused()
    kb.press("Space")
    expect(card.locator("#consent")).to_be_checked()
    kb.press("Tab")
    expect(card.locator("#submit")).to_be_focused()
    kb.press("Enter")
    expect(card.locator("#result")).not_to_be_empty()
    page.wait_for_function("window.received.length > 0")
    assert page.evaluate("window.received[0].data.outcome") == "authorized"
    assert shop.status(si["id"]) == "Authorized"


def test_enter_in_a_field_submits_and_the_first_wrong_field_is_announced(
    page: Page, shop: Shop
) -> None:
    si = shop.new_si()
    page.goto(shop.page_url(si))
    page.locator("#name").focus()
    page.keyboard.type("Test Cardholder")
    page.keyboard.press("Enter")  # nothing else filled in
    expect(page.locator("#number-error")).not_to_be_empty()
    expect(page.locator("#number")).to_have_attribute("aria-invalid", "true")
    described = page.locator("#number").get_attribute("aria-describedby") or ""
    assert "number-error" in described.split(), described
    assert shop.status(si["id"]) == "Created"


@pytest.fixture
def axe_context(browser: Browser) -> Iterator[BrowserContext]:
    # The page's CSP lets only its own hashed script run, so axe-core injected by the test
    # would be blocked: this context alone bypasses CSP, for the accessibility scan only.
    ctx = browser.new_context(bypass_csp=True)
    yield ctx
    ctx.close()


def serious_violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    page.add_script_tag(content=axe_source)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_finds_nothing_serious_on_the_form_or_the_invalid_link_page(
    axe_context: BrowserContext, axe_source: str, shop: Shop
) -> None:
    page = axe_context.new_page()
    si = shop.new_si()
    page.goto(shop.page_url(si))
    expect(page.locator("#card-form")).to_be_visible()
    assert serious_violations(page, axe_source) == []
    # With every field wrong and its error shown.
    page.locator("#submit").click()
    expect(page.locator("#number-error")).not_to_be_empty()
    assert serious_violations(page, axe_source) == []

    page.goto(shop.page_url(si, "not-the-secret"))
    expect(page.locator("#link-problem")).to_be_visible()
    assert serious_violations(page, axe_source) == []


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= NARROW["width"], width


def test_at_320_px_nothing_scrolls_sideways_before_or_after_an_error(
    browser: Browser, shop: Shop
) -> None:
    ctx = browser.new_context(viewport=NARROW)
    try:
        page = ctx.new_page()
        si = shop.new_si()
        page.goto(shop.page_url(si))
        expect(page.locator("#card-form")).to_be_visible()
        no_sideways_scroll(page)
        fill_card(page, "5200 0000 0000 1006")  # fails Luhn
        page.locator("#submit").click()
        expect(page.locator("#number-error")).not_to_be_empty()
        no_sideways_scroll(page)
        fill_card(page, DECLINED)
        page.locator("#submit").click()
        assert wait_outcome(page) == ("declined", "Created")
        expect(page.locator("#form-error")).not_to_be_empty()
        no_sideways_scroll(page)
        page.goto(shop.page_url(si, "not-the-secret"))
        expect(page.locator("#link-problem")).to_be_visible()
        no_sideways_scroll(page)
    finally:
        ctx.close()
