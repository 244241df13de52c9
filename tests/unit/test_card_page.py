"""The hosted card page, ``GET /setup/{id}?clientSessionSecret=…`` on the PCI listener (CONTRACT §9),
in process: who gets the form and who gets the invalid-link page, the security headers, the
assets and their hashes, what the page shows (escaped), and that the secret is never logged.
The browser's side (the form, the handshake, CSP enforcement) is tested in tests/e2e/browser."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import replace
from typing import Any

import httpx
import pytest

from cardkeep.cde.page import format_amount
from cardkeep.domain.errors import ClientSecretExpired, ClientSecretUsed, InvalidState
from cardkeep.domain.money import Money
from cardkeep.domain.setup_intent import Status
from tests.merchant import DECLINED_CARD, SI_FIELDS, card
from tests.world import World, captured_log

CSP_FORM = re.compile(
    r"^default-src 'none'; script-src '(sha384-[A-Za-z0-9+/=]+)'; style-src 'self'; "
    r"connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors (.+)$"
)


@pytest.fixture
def world() -> World:
    return World()


def _created(world: World, **fields: Any) -> tuple[str, str]:
    api, _ = world.clients()
    r = api.post("/setup-intents", json={**SI_FIELDS, **fields})
    assert r.status_code == 200, r.text
    return r.json()["id"], r.json()["clientSessionSecret"]


def _page(world: World, si_id: str, secret: str | None) -> httpx.Response:
    _, pci = world.bare_clients()
    query = "" if secret is None else f"?clientSessionSecret={secret}"
    return pci.get(f"/setup/{si_id}{query}")


def _submit(world: World, si_id: str, secret: str, pan: str | None = None) -> httpx.Response:
    _, pci = world.bare_clients()
    headers = {"Authorization": f"Basic {secret}", "version": "2025-09-10"}
    body = {"cardDetails": card(pan) if pan else card(), "mitConsentGiven": True}
    return pci.post(f"/setup-intents/public/{si_id}/card", json=body, headers=headers)


def _common_headers(r: httpx.Response) -> None:
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"] == "text/html; charset=utf-8"


def _refused(r: httpx.Response, status: int, why: str) -> None:
    assert r.status_code == status, r.text
    _common_headers(r)
    assert "<form" not in r.text
    assert "invalid or has expired" in r.text
    assert why in r.text
    assert "<script" not in r.text
    assert "script-src 'none'" in r.headers["content-security-policy"]


def test_a_valid_link_gets_the_form_with_the_merchant_terms_and_amount(world: World) -> None:
    si_id, secret = _created(world, terms="No-show fee applies.")
    r = _page(world, si_id, secret)
    assert r.status_code == 200, r.text
    _common_headers(r)
    html = r.text
    assert '<form id="card-form"' in html
    assert 'id="merchant" class="merchant">m<' in html  # the account's name
    assert "No-show fee applies." in html
    assert "£10.00" in html  # SI_FIELDS' intendedAmount
    for autocomplete in ("cc-name", "cc-number", "cc-exp", "cc-csc"):
        assert f'autocomplete="{autocomplete}"' in html
    consent = re.search(r"<input[^>]*id=\"consent\"[^>]*>", html)
    assert consent is not None
    assert "checked" not in consent.group(0)
    assert secret not in html  # the script reads it from the address, the HTML never echoes it
    assert f'data-setup-intent-id="{si_id}"' in html
    # Card inputs have no name: without the script nothing can be submitted as a plain form.
    assert not re.search(r"<input[^>]* name=", html)


def test_the_csp_runs_only_the_served_script_by_its_hash(world: World) -> None:
    si_id, secret = _created(world)
    r = _page(world, si_id, secret)
    match = CSP_FORM.match(r.headers["content-security-policy"])
    assert match is not None, r.headers["content-security-policy"]
    integrity, ancestors = match.groups()
    assert ancestors == "http://localhost:* http://127.0.0.1:*"  # the sandbox default
    scripts = re.findall(r"<script[^>]*>", r.text)
    assert len(scripts) == 1  # one script, by src, never inline
    src = re.search(r'src="([^"]+)"', scripts[0])
    assert src is not None
    assert f'integrity="{integrity}"' in scripts[0]
    _, pci = world.bare_clients()
    served = pci.get(src.group(1))
    assert served.status_code == 200
    assert served.headers["content-type"] == "text/javascript; charset=utf-8"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert "immutable" in served.headers["cache-control"]
    digest = base64.b64encode(hashlib.sha384(served.content).digest()).decode()
    assert integrity == f"sha384-{digest}"
    style = re.search(r'<link rel="stylesheet" href="([^"]+)" integrity="([^"]+)"', r.text)
    assert style is not None
    css = pci.get(style.group(1))
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    css_digest = base64.b64encode(hashlib.sha384(css.content).digest()).decode()
    assert style.group(2) == f"sha384-{css_digest}"


def test_an_unknown_asset_is_a_404_problem(world: World) -> None:
    _, pci = world.bare_clients()
    r = pci.get("/setup/assets/page-0000000000000000.js")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_frame_ancestors_are_the_accounts_origins(world: World) -> None:
    world.services.accounts.set_origins(
        world.account.id, ["https://shop.example", "http://localhost:3000"]
    )
    si_id, secret = _created(world)
    csp = _page(world, si_id, secret).headers["content-security-policy"]
    assert csp.endswith("frame-ancestors https://shop.example http://localhost:3000")
    origins = re.search(r'data-origins="([^"]+)"', _page(world, si_id, secret).text)
    assert origins is not None
    decoded = origins.group(1).replace("&quot;", '"')
    assert json.loads(decoded) == ["https://shop.example", "http://localhost:3000"]


def test_wrong_missing_or_unknown_secrets_get_the_invalid_page_framed_by_nobody(
    world: World,
) -> None:
    si_id, secret = _created(world)
    for sid, sec in (
        (si_id, "wrong"),
        (si_id, None),
        ("si_sandbox_AAAAAAAAAAAAAAAAAAAAAA", secret),
    ):
        r = _page(world, sid, sec)
        _refused(r, 401, "This card link is not valid.")
        assert r.headers["content-security-policy"].endswith("frame-ancestors 'none'")
    _refused(_page(world, si_id, world.key), 401, "not valid")  # an account key is not a secret


def test_used_expired_exhausted_and_closed_links_get_the_invalid_page(world: World) -> None:
    used_id, used = _created(world)
    assert _submit(world, used_id, used).json()["status"] == "Authorized"
    r = _page(world, used_id, used)
    _refused(r, 410, "already been used")
    assert "frame-ancestors http://localhost:*" in r.headers["content-security-policy"]

    tired_id, tired = _created(world)
    for _ in range(5):
        assert _submit(world, tired_id, tired, DECLINED_CARD).json()["status"] == "Created"
    _refused(_page(world, tired_id, tired), 410, "already been used")

    canceled_id, canceled = _created(world)
    api, _ = world.clients()
    assert api.delete(f"/setup-intents/{canceled_id}").json()["status"] == "Canceled"
    _refused(_page(world, canceled_id, canceled), 401, "not valid")  # canceling drops the secret

    old_id, old = _created(world)
    assert _page(world, old_id, old).status_code == 200  # reading does not consume it
    world.advance(minutes=31)
    _refused(_page(world, old_id, old), 410, "has expired")


def test_an_intent_past_its_expiry_takes_no_card_even_before_the_sweep(world: World) -> None:
    si_id, secret = _created(world, expireAt="2026-11-24T12:10:00Z")
    api, _ = world.clients()
    world.advance(minutes=11)
    r = _page(world, si_id, secret)
    assert r.status_code == 409, r.text
    assert "<form" not in r.text
    assert api.get(f"/setup-intents/{si_id}").json()["status"] == "Expired"


def test_the_service_view_names_each_refusal(world: World) -> None:
    sis = world.services.setup_intents
    si_id, secret = _created(world)
    view = sis.card_page(si_id, secret)
    assert view.refusal is None
    assert view.si is not None
    assert view.account is not None
    assert view.account.id == world.account.id
    assert _submit(world, si_id, secret).status_code == 200
    assert isinstance(sis.card_page(si_id, secret).refusal, ClientSecretUsed)
    other_id, other = _created(world)
    world.advance(minutes=31)
    assert isinstance(sis.card_page(other_id, other).refusal, ClientSecretExpired)
    third_id, third = _created(world)
    stored = world.storage.tables.setup_intents
    stored[third_id] = replace(stored[third_id], status=Status.CANCELED)  # a secret kept
    assert isinstance(sis.card_page(third_id, third).refusal, InvalidState)


def test_what_the_merchant_wrote_is_escaped(world: World) -> None:
    si_id, secret = _created(world, terms='<script>alert("x")</script> & <img src=x>')
    html = _page(world, si_id, secret).text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=x&gt;" in html


def test_amounts_are_written_in_the_currencys_minor_units() -> None:
    assert format_amount(Money(2000, "GBP")) == "£20.00"
    assert format_amount(Money(123456, "EUR")) == "€1,234.56"
    assert format_amount(Money(5, "USD")) == "$0.05"
    assert format_amount(Money(500, "JPY")) == "500 JPY"
    assert format_amount(Money(1500, "CHF")) == "15.00 CHF"
    assert format_amount(Money(1234, "KWD")) == "1.234 KWD"


def test_the_secret_in_the_query_string_is_never_logged(world: World) -> None:
    si_id, secret = _created(world)
    with captured_log() as buffer:
        assert _page(world, si_id, secret).status_code == 200
        assert _page(world, si_id, secret + "x").status_code == 401
    logged = buffer.getvalue()
    assert f"/setup/{si_id}" in logged  # the request is logged, by its path
    assert secret not in logged
    assert "clientSessionSecret" not in logged
