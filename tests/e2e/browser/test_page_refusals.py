"""What the hosted card page refuses, in a real browser: a link whose secret is wrong, used up,
expired or exhausted (both the page and the card endpoint), framing by an origin the account
does not allow (the browser blocks it by the page's CSP), a hello from anything but an allowed
parent, and an outcome for anyone but the parent's origin that said hello."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Frame, Page, expect

from tests.e2e.browser.parent_site import (
    APPROVED,
    DECLINED,
    MAX_ATTEMPTS,
    SECRET_LIFETIME,
    ParentSite,
    Shop,
    checkout_page,
    clear_outcome,
    fill_card,
    origin_of,
    outcome,
    plain_page,
    sibling_page,
    wait_outcome,
)

INVALID = re.compile(r"invalid|expired", re.I)
OUTCOME_KEYS = ["outcome", "setupIntentId", "status", "type"]


def assert_invalid_link_page(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None
    assert 400 <= response.status < 500, response.status
    expect(page.locator("#link-problem")).to_be_visible()
    expect(page.locator("h1")).to_contain_text(INVALID)
    expect(page.locator("form")).to_have_count(0)
    expect(page.locator("#card-form")).to_have_count(0)


def card_frame(page: Page) -> Frame:
    frame = page.frame_locator("#card").owner.element_handle().content_frame()
    assert frame is not None
    return frame


def csp_of(headers: dict[str, str]) -> dict[str, list[str]]:
    """The page's Content-Security-Policy, directive -> sources."""
    out: dict[str, list[str]] = {}
    for part in headers["content-security-policy"].split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def test_a_wrong_secret_is_refused_by_the_page_and_the_endpoint(page: Page, shop: Shop) -> None:
    si = shop.new_si()
    other = shop.new_si()
    secret = si["clientSessionSecret"]
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for bad in (wrong, other["clientSessionSecret"]):
        assert_invalid_link_page(page, shop.page_url(si, bad))
        r = shop.post_card(si, APPROVED, secret=bad)
        assert (r.status_code, r.json()["code"]) == (401, "client_session_secret_invalid")
    assert_invalid_link_page(page, f"{shop.server.pci_url}/setup/{si['id']}")
    assert shop.status(si["id"]) == "Created"


def test_a_used_secret_is_refused_by_the_page_and_the_endpoint(page: Page, shop: Shop) -> None:
    si = shop.new_si()
    page.goto(shop.page_url(si))
    fill_card(page, APPROVED)
    page.locator("#submit").click()
    assert wait_outcome(page) == ("authorized", "Authorized")
    assert_invalid_link_page(page, shop.page_url(si))
    r = shop.post_card(si, APPROVED)
    assert (r.status_code, r.json()["code"]) == (401, "client_session_secret_used")


def test_an_expired_secret_is_refused_by_the_page_and_the_endpoint(page: Page, shop: Shop) -> None:
    si = shop.new_si()
    assert page.goto(shop.page_url(si)).status == 200  # type: ignore[union-attr]
    assert shop.merchant.advance(SECRET_LIFETIME + 60).status_code == 200
    assert_invalid_link_page(page, shop.page_url(si))
    r = shop.post_card(si, APPROVED)
    assert (r.status_code, r.json()["code"]) == (401, "client_session_secret_expired")
    assert shop.status(si["id"]) == "Created"  # the intent itself lives 30 days


def test_a_page_left_open_past_the_secret_s_expiry_gets_a_clear_answer(
    page: Page, shop: Shop
) -> None:
    si = shop.new_si()
    page.goto(shop.page_url(si))
    shop.merchant.advance(SECRET_LIFETIME + 60)
    fill_card(page, APPROVED)
    page.locator("#submit").click()
    expect(page.locator("#form-error")).to_contain_text(INVALID)
    assert shop.status(si["id"]) == "Created"


def test_an_exhausted_secret_is_refused_by_the_page_and_the_endpoint(
    page: Page, shop: Shop
) -> None:
    si = shop.new_si()
    for _ in range(MAX_ATTEMPTS):
        r = shop.post_card(si, DECLINED)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Created"
    assert_invalid_link_page(page, shop.page_url(si))
    r = shop.post_card(si, APPROVED)
    assert (r.status_code, r.json()["code"]) == (401, "client_session_secret_used")
    assert shop.status(si["id"]) == "Created"


def test_an_intent_no_longer_created_gets_the_invalid_link_page(page: Page, shop: Shop) -> None:
    si = shop.new_si()
    assert shop.merchant.api.delete(f"/setup-intents/{si['id']}").status_code == 200
    assert_invalid_link_page(page, shop.page_url(si))


def blocked_by_csp(page: Page, site: ParentSite, card_url: str) -> None:
    """Frame ``card_url`` in a checkout page on ``site``: the page is served with a CSP whose
    frame-ancestors leaves ``site`` out, and the browser never shows the form."""
    with page.expect_response(lambda r: "/setup/" in r.url) as answered:
        page.goto(site.serve("/checkout", checkout_page(card_url)))
    response = answered.value
    assert response.status == 200
    ancestors = csp_of(response.headers)["frame-ancestors"]
    assert site.origin not in ancestors
    assert not any(re.fullmatch(a.replace("*", r"\d+"), site.origin) for a in ancestors)
    page.wait_for_function("window.cardLoads > 0")
    frame = card_frame(page)
    assert frame.url != card_url  # Chromium puts its error page in the blocked frame
    assert frame.locator("#card-form").count() == 0
    assert page.evaluate("window.received") == []


def test_a_parent_on_an_origin_the_sandbox_default_leaves_out_cannot_frame_the_page(
    page: Page, shop: Shop, foreign_site: ParentSite, allowed_site: ParentSite
) -> None:
    si = shop.new_si()
    blocked_by_csp(page, foreign_site, shop.page_url(si))
    # The same link framed by an allowed origin shows the form: the block above was the origin.
    page.goto(allowed_site.serve("/checkout", checkout_page(shop.page_url(si))))
    expect(page.frame_locator("#card").locator("#card-form")).to_be_visible()


def test_a_parent_outside_the_account_s_own_origins_cannot_frame_the_page(
    page: Page, shop: Shop, allowed_site: ParentSite
) -> None:
    shop.set_origins(["https://shop.example.com"])
    si = shop.new_si()
    blocked_by_csp(page, allowed_site, shop.page_url(si))


def test_the_outcome_goes_to_the_allowed_parent_that_said_hello_in_dojo_s_shape(
    page: Page, shop: Shop, allowed_site: ParentSite
) -> None:
    si = shop.new_si()
    page.goto(allowed_site.serve("/checkout", checkout_page(shop.page_url(si))))
    frame = page.frame_locator("#card")
    expect(frame.locator("#card-form")).to_be_visible()
    fill_card(card_frame(page), DECLINED)
    frame.locator("#submit").click()
    page.wait_for_function("window.received.length > 0")
    fill_card(card_frame(page), APPROVED)
    frame.locator("#submit").click()
    page.wait_for_function("window.received.length > 1")
    received = page.evaluate("window.received")
    pci = origin_of(shop.server.pci_url)
    assert [m["origin"] for m in received] == [pci, pci]
    for message in received:
        assert sorted(message["data"]) == OUTCOME_KEYS
        assert message["data"]["type"] == "cardkeep.setup_intent"
        assert message["data"]["setupIntentId"] == si["id"]
    assert [(m["data"]["outcome"], m["data"]["status"]) for m in received] == [
        ("declined", "Created"),
        ("authorized", "Authorized"),
    ]


def fence(page: Page, frames: list[str]) -> None:
    """Post a marker from the card page to each of ``frames`` (JS expressions for windows, seen
    from the card page) and wait until each has it: messages from one window to another arrive
    in order, so anything the card page posted before is in ``received`` by then."""
    card = card_frame(page)
    for target in frames:
        card.evaluate(f'{target}.postMessage({{type: "fence"}}, "*")')


def received_before_fence(where: Page | Frame) -> list[object]:
    where.wait_for_function('window.received.some((m) => m.data.type === "fence")')
    got = where.evaluate("window.received")
    return [m["data"] for m in got if m["data"].get("type") != "fence"]


def test_without_a_hello_the_page_posts_its_outcome_to_no_one(
    page: Page, shop: Shop, allowed_site: ParentSite
) -> None:
    si = shop.new_si()
    page.goto(allowed_site.serve("/checkout", checkout_page(shop.page_url(si), hello=False)))
    expect(page.frame_locator("#card").locator("#card-form")).to_be_visible()
    fill_card(card_frame(page), APPROVED)
    page.frame_locator("#card").locator("#submit").click()
    assert wait_outcome(card_frame(page)) == ("authorized", "Authorized")
    fence(page, ["parent"])
    assert received_before_fence(page) == []


@pytest.mark.parametrize("sibling_host", ["127.0.0.2", "127.0.0.1"])
def test_a_hello_from_a_frame_that_is_not_the_parent_gets_no_outcome(
    page: Page, shop: Shop, allowed_site: ParentSite, sibling_host: str
) -> None:
    """A sibling frame on a disallowed origin, or on an allowed origin that is not the parent,
    gets a handle on the card page through ``parent.frames[0]`` and says hello: the page
    remembers neither, so the outcome goes to no one (the parent never said hello)."""
    si = shop.new_si()
    pci = origin_of(shop.server.pci_url)
    with ParentSite(sibling_host) as other:
        sibling_url = other.serve("/other", sibling_page(pci))
        checkout = checkout_page(shop.page_url(si), hello=False, sibling_url=sibling_url)
        page.goto(allowed_site.serve("/checkout", checkout))
        expect(page.frame_locator("#card").locator("#card-form")).to_be_visible()
        sibling = page.frame_locator("#sibling").owner.element_handle().content_frame()
        assert sibling is not None
        sibling.wait_for_function("typeof window.sayHello === 'function'")
        sibling.evaluate("window.sayHello()")
        fill_card(card_frame(page), APPROVED)
        page.frame_locator("#card").locator("#submit").click()
        assert wait_outcome(card_frame(page)) == ("authorized", "Authorized")
        fence(page, ["parent", "parent.frames[1]"])
        assert received_before_fence(page) == []
        assert received_before_fence(sibling) == []


def test_the_page_that_used_up_the_last_attempt_says_so_on_the_next_one(
    page: Page, shop: Shop
) -> None:
    si = shop.new_si()
    for _ in range(MAX_ATTEMPTS - 1):
        assert shop.post_card(si, DECLINED).json()["status"] == "Created"
    page.goto(shop.page_url(si))
    fill_card(page, DECLINED)
    page.locator("#submit").click()
    assert wait_outcome(page) == ("declined", "Created")  # the fifth, last attempt
    clear_outcome(page)
    fill_card(page, APPROVED)
    page.locator("#submit").click()
    expect(page.locator("#form-error")).to_contain_text(re.compile("already been used|invalid"))
    expect(page.locator("#submit")).to_be_disabled()
    assert outcome(page)[0] is None  # refused, not an answered attempt
    assert shop.status(si["id"]) == "Created"


def test_a_parent_replaced_by_a_disallowed_origin_before_the_outcome_hears_nothing(
    page: Page, shop: Shop, allowed_site: ParentSite, foreign_site: ParentSite
) -> None:
    """The allowed parent says hello, the card is sent, and before the answer arrives the parent
    is replaced by a page on an origin the account does not allow. The outcome was addressed to
    the hello's origin only, and the card page goes with the document that framed it: the new
    page receives nothing, while the card is still handled once on the server."""
    si = shop.new_si()
    page.goto(allowed_site.serve("/checkout", checkout_page(shop.page_url(si))))
    frame = page.frame_locator("#card")
    expect(frame.locator("#card-form")).to_be_visible()
    fill_card(card_frame(page), APPROVED)
    elsewhere = foreign_site.serve("/elsewhere", plain_page("Elsewhere"))
    frame.locator("#submit").click(no_wait_after=True)
    page.goto(elsewhere)  # the parent is replaced while the card is being checked
    assert origin_of(page.url) == origin_of(elsewhere)
    # The card request either reached cardkeep before the frame went (Authorized) or did not
    # (Created); whichever, give any answer time to come back, then look.
    page.wait_for_timeout(1000)
    assert page.evaluate("window.received") == []
    assert shop.status(si["id"]) in ("Created", "Authorized")
