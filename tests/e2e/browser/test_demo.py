"""The demo merchant (examples/merchant-demo) in Debian's chromium, against a real cardkeep.

The demo runs in process (uvicorn in a thread, on a free port) with a fresh sandbox account's key;
the browser books a table, enters the card in cardkeep's hosted card page inside the demo's iframe,
and the demo learns the outcome from the page's message and charges the no-show fee.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from playwright.sync_api import Page, Request, expect

from tests.e2e.harness import VERSION, Server, free_port, http_client

DEMO_DIR = Path(__file__).resolve().parents[3] / "examples" / "merchant-demo"
APPROVED = "5200 0000 0000 1005"  # the sandbox's approving test card
DECLINED = "4000 0000 0000 0002"  # the sandbox declines it ("Do not honour")
BOOKING_URL = re.compile(r"/bookings/[0-9a-f]+$")


def _load(name: str) -> ModuleType:
    """A module of the demo (its directory has a dash, so it is no package)."""
    spec = importlib.util.spec_from_file_location(f"merchant_demo_{name}", DEMO_DIR / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


demo_app = _load("app")
demo_sandbox = _load("sandbox")


@dataclass
class Demo:
    url: str
    server: Server
    key: str

    def setup_intent_status(self, si_id: str) -> str:
        headers = {"Authorization": f"Basic {self.key}", "version": VERSION}
        with http_client(self.server.api_url, headers) as api:
            resp = api.get(f"/setup-intents/{si_id}")
        assert resp.status_code == 200, resp.text
        return str(resp.json()["status"])


@contextmanager
def demo_site(server: Server) -> Iterator[Demo]:
    key = server.create_account("restaurant")
    app = demo_app.create_app(server.api_url, server.pci_url, key)
    with demo_sandbox.ThreadedSite(app, "127.0.0.1", free_port()) as site:
        yield Demo(site.url, server, key)


@pytest.fixture
def demo(server: Server) -> Iterator[Demo]:
    """The demo in front of each engine's server."""
    with demo_site(server) as site:
        yield site


@pytest.fixture
def sqlite_demo(sqlite_server: Server) -> Iterator[Demo]:
    with demo_site(sqlite_server) as site:
        yield site


def book(page: Page, demo: Demo) -> str:
    """Book a table; the booking page is shown. The setup intent's id."""
    page.goto(f"{demo.url}/")
    page.fill("#guest-name", "Ada Lovelace")
    page.fill("#party-size", "2")
    page.click("#book")
    page.wait_for_url(BOOKING_URL)
    expect(page.locator("#si-status")).to_have_text("Created")
    si_id = page.locator("#booking").get_attribute("data-setup-intent-id")
    assert si_id
    assert si_id.startswith("si_sandbox_")
    return si_id


def fill_card(page: Page) -> None:
    frame = page.frame_locator("#card-frame")
    frame.locator("#name").fill("Ada Lovelace")
    frame.locator("#number").fill(APPROVED)
    frame.locator("#expiry").fill("12/30")
    frame.locator("#cvv").fill("123")


def test_a_card_saved_in_the_frame_reaches_the_demo_and_the_no_show_fee_is_charged(
    page: Page, demo: Demo
) -> None:
    to_demo: list[Request] = []
    page.on("request", lambda r: to_demo.append(r) if r.url.startswith(demo.url) else None)
    si_id = book(page, demo)

    fill_card(page)
    page.frame_locator("#card-frame").locator("#consent").check()
    page.frame_locator("#card-frame").locator("#submit").click()

    # The page's message reached the parent, which checked its origin and shows the outcome.
    outcome = page.locator("#outcome")
    expect(outcome).to_have_attribute("data-outcome", "authorized")
    expect(outcome).to_have_attribute("data-status", "Authorized")
    expect(outcome).to_have_text("Card saved")
    expect(page.locator("#si-status")).to_have_text("Authorized")
    assert demo.setup_intent_status(si_id) == "Authorized"

    page.click("#charge")
    page.wait_for_url(BOOKING_URL)
    expect(page.locator("#pi-status")).to_have_text("Captured")
    expect(page.locator("#si-status")).to_have_text("Completed")
    expect(page.locator("#problem")).to_have_count(0)
    assert demo.setup_intent_status(si_id) == "Completed"

    # The card went to the PCI listener only: nothing the browser sent the demo carries it.
    digits = APPROVED.replace(" ", "")
    for request in to_demo:
        sent = request.url + (request.post_data or "")
        assert digits not in sent.replace(" ", "").replace("+", "").replace("%20", "")


def test_without_consent_the_card_form_does_not_submit(page: Page, sqlite_demo: Demo) -> None:
    card_posts: list[str] = []
    page.on(
        "request",
        lambda r: card_posts.append(r.url) if r.method == "POST" and "/card" in r.url else None,
    )
    si_id = book(page, sqlite_demo)

    fill_card(page)
    frame = page.frame_locator("#card-frame")
    frame.locator("#submit").click()

    expect(frame.locator("#consent-error")).to_be_visible()
    expect(frame.locator("#consent-error")).not_to_be_empty()
    expect(frame.locator("body")).not_to_have_attribute("data-outcome", re.compile(".*"))
    assert card_posts == []
    expect(page.locator("#outcome")).to_be_empty()
    expect(page.locator("#outcome")).not_to_have_attribute("data-outcome", re.compile(".*"))
    assert sqlite_demo.setup_intent_status(si_id) == "Created"


def test_charging_before_a_card_is_on_file_shows_cardkeeps_problem(
    page: Page, sqlite_demo: Demo
) -> None:
    si_id = book(page, sqlite_demo)
    booking_url = page.url

    page.click("#charge")
    page.wait_for_url(BOOKING_URL)
    problem = page.locator("#problem")
    expect(problem).to_contain_text("setup_intent_not_usable")
    expect(problem).to_contain_text("only an Authorized setup intent can be charged")
    expect(problem).not_to_contain_text("Traceback")
    expect(page.locator("#pi-status")).to_have_text("no charge yet")
    assert sqlite_demo.setup_intent_status(si_id) == "Created"

    # The hosted page's redirect back (when it is opened unframed) adds a query: it is ignored,
    # the booking is shown again with the status read from cardkeep, and the problem is gone.
    page.goto(f"{booking_url}?setupIntentId={si_id}&status=Authorized")
    expect(page.locator("#si-status")).to_have_text("Created")
    expect(page.locator("#problem")).to_have_count(0)
    expect(page.locator("#card-frame")).to_have_attribute(
        "src", re.compile(rf"/setup/{si_id}\?clientSessionSecret=")
    )


def test_a_declined_card_leaves_the_booking_open_and_another_card_in_the_same_frame_is_saved(
    page: Page, sqlite_demo: Demo
) -> None:
    si_id = book(page, sqlite_demo)
    frame = page.frame_locator("#card-frame")
    fill_card(page)
    frame.locator("#number").fill(DECLINED)
    frame.locator("#consent").check()
    frame.locator("#submit").click()

    outcome = page.locator("#outcome")
    expect(outcome).to_have_attribute("data-outcome", "declined")
    expect(outcome).to_have_attribute("data-status", "Created")
    expect(outcome).to_have_text("Card declined: try another card")
    expect(page.locator("#refresh")).to_be_visible()
    assert sqlite_demo.setup_intent_status(si_id) == "Created"

    frame.locator("#number").fill(APPROVED)
    frame.locator("#cvv").fill("123")
    frame.locator("#submit").click()
    expect(outcome).to_have_attribute("data-outcome", "authorized")
    expect(page.locator("#si-status")).to_have_text("Authorized")
    expect(page.locator("#refresh")).to_be_hidden()
    assert sqlite_demo.setup_intent_status(si_id) == "Authorized"


def test_refreshing_the_card_link_shows_the_frame_with_a_new_secret(
    page: Page, sqlite_demo: Demo
) -> None:
    book(page, sqlite_demo)
    frame_el = page.locator("#card-frame")
    old_src = frame_el.get_attribute("src")
    assert old_src is not None

    page.click("#refresh")
    page.wait_for_url(BOOKING_URL)
    new_src = frame_el.get_attribute("src")
    assert new_src is not None
    assert new_src != old_src
    expect(page.frame_locator("#card-frame").locator("#card-form")).to_be_visible()
    expect(page.locator("#problem")).to_have_count(0)

    # The old link no longer takes a card: cardkeep answers it with the invalid-link page.
    with http_client(sqlite_demo.server.pci_url) as pci:
        old = pci.get(old_src.removeprefix(sqlite_demo.server.pci_url))
    assert old.status_code in (401, 410)
    assert 'id="card-form"' not in old.text
