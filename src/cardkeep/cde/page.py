"""The hosted card page (CONTRACT §9): ``GET /setup/{id}?clientSessionSecret=…`` and its two assets.

Owns the page's HTML, its security headers and the assets' names and hashes. The page is a card
form for a ``Created`` setup intent whose client session secret is valid; anything else gets a
page saying the link is invalid or has expired, with no form. Its one script and one stylesheet
are files in ``page_assets/``, served under names carrying their content hash; the CSP runs that
script only (by its SRI hash: no inline script), lets it talk to this origin only, and lets the
page be framed only by the origins the account allows. The query string (the secret) is never
logged: the request log records the path alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from html import escape
from importlib import resources

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardkeep.domain.errors import (
    ClientSecretExpired,
    ClientSecretUsed,
    DomainError,
    InvalidState,
    NotFound,
)
from cardkeep.domain.money import Money
from cardkeep.service.setup_intents import CardPage, SetupIntents
from cardkeep.web.problems import problem_for
from cardkeep.web.trace import trace_id_of

ASSETS = "/setup/assets/"
QUERY_KEY = "clientSessionSecret"  # the query parameter carrying the secret


@dataclass(frozen=True)
class Asset:
    name: str  # served as ASSETS + name; the name carries the content hash
    body: bytes
    media_type: str
    integrity: str  # SRI value, also the CSP hash source for the script


def _asset(filename: str, media_type: str) -> Asset:
    body = resources.files("cardkeep.cde").joinpath("page_assets", filename).read_bytes()
    stem, ext = filename.rsplit(".", 1)
    digest = hashlib.sha384(body).digest()
    name = f"{stem}-{hashlib.sha256(body).hexdigest()[:16]}.{ext}"
    return Asset(name, body, media_type, "sha384-" + base64.b64encode(digest).decode())


SCRIPT = _asset("page.js", "text/javascript; charset=utf-8")
STYLE = _asset("page.css", "text/css; charset=utf-8")
_BY_NAME = {a.name: a for a in (SCRIPT, STYLE)}

_COMMON_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def content_security_policy(origins: tuple[str, ...], *, script: bool) -> str:
    """The page's CSP: nothing by default; its own stylesheet; the one script by hash (only on
    the form); fetches to this origin; no form submission, no <base>; framed only by ``origins``."""
    ancestors = " ".join(origins) if origins else "'none'"
    parts = [
        "default-src 'none'",
        f"script-src '{SCRIPT.integrity}'" if script else "script-src 'none'",
        "style-src 'self'",
        "connect-src 'self'" if script else "connect-src 'none'",
        "form-action 'none'",
        "base-uri 'none'",
        f"frame-ancestors {ancestors}",
    ]
    return "; ".join(parts)


_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}
_EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "HUF": 2, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3}


def format_amount(money: Money) -> str:
    """``£20.00`` for GBP 2000; currencies without a symbol are written ``20.00 CHF``."""
    exponent = _EXPONENTS.get(money.currency_code, 2)
    whole, minor = divmod(money.value, 10**exponent)
    figure = f"{whole:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    symbol = _SYMBOLS.get(money.currency_code)
    return f"{symbol}{figure}" if symbol else f"{figure} {money.currency_code}"


def _head(title: str, *, script: bool) -> str:
    tag = (
        f'<script src="{ASSETS}{SCRIPT.name}" integrity="{SCRIPT.integrity}" defer></script>'
        if script
        else ""
    )
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f'<link rel="stylesheet" href="{ASSETS}{STYLE.name}" integrity="{STYLE.integrity}">\n'
        f"{tag}\n</head>\n"
    )


def form_html(view: CardPage) -> str:
    si, account = view.si, view.account
    assert si is not None
    assert account is not None
    merchant = escape(account.name)
    redirect = si.extras.get("config", {}).get("redirectUrl") or ""
    amount = (
        f'<p id="amount">Amount: <strong>{escape(format_amount(si.intended_amount))}</strong></p>'
        if si.intended_amount is not None
        else ""
    )
    data = (
        f'data-setup-intent-id="{escape(si.id)}" '
        f'data-origins="{escape(json.dumps(list(view.origins)))}" '
        f'data-redirect-url="{escape(redirect)}"'
    )
    return (
        _head(f"Save your card with {account.name}", script=True)
        + f"""<body>
<main id="setup" {data}>
<h1>Save your card</h1>
<p id="merchant" class="merchant">{merchant}</p>
<section class="terms" aria-label="Terms">
<p id="terms">{escape(si.terms)}</p>
{amount}
</section>
<form id="card-form" novalidate>
<div class="field">
<label for="name">Name on card <span class="hint">(optional)</span></label>
<input type="text" id="name" autocomplete="cc-name" maxlength="100" spellcheck="false"
 aria-describedby="name-error">
<p id="name-error" class="error"></p>
</div>
<div class="field">
<label for="number">Card number <span id="brand" class="brand"></span></label>
<input type="text" id="number" autocomplete="cc-number" inputmode="numeric" maxlength="23"
 spellcheck="false" required aria-describedby="number-error">
<p id="number-error" class="error"></p>
</div>
<div class="row">
<div class="field">
<label for="expiry">Expiry date <span class="hint">(MM/YY)</span></label>
<input type="text" id="expiry" autocomplete="cc-exp" inputmode="numeric" maxlength="7"
 placeholder="MM/YY" required aria-describedby="expiry-error">
<p id="expiry-error" class="error"></p>
</div>
<div class="field">
<label for="cvv">Security code</label>
<input type="text" id="cvv" autocomplete="cc-csc" inputmode="numeric" maxlength="4"
 required aria-describedby="cvv-error">
<p id="cvv-error" class="error"></p>
</div>
</div>
<div class="consent">
<input type="checkbox" id="consent" aria-describedby="consent-error">
<label for="consent">I agree that {merchant} may keep this card and charge it later under the
terms above.</label>
</div>
<p id="consent-error" class="error"></p>
<button type="submit" id="submit">Save card</button>
</form>
<p id="form-error" class="error" role="alert"></p>
<p id="result" class="result" role="status"></p>
<noscript><p>This page needs JavaScript to send your card securely.</p></noscript>
</main>
</body>
</html>
"""
    )


def _refusal(refusal: DomainError | None) -> tuple[int, str]:
    """The status and the sentence for a link that cannot take a card."""
    if isinstance(refusal, ClientSecretUsed):
        return 410, "This card link has already been used."
    if isinstance(refusal, ClientSecretExpired):
        return 410, "This card link has expired."
    if isinstance(refusal, InvalidState):
        return 409, "This card request no longer accepts a card."
    return 401, "This card link is not valid."


def refusal_html(why: str) -> str:
    return (
        _head("Card link invalid or expired", script=False)
        + f"""<body>
<main id="setup">
<h1>This card link is invalid or has expired</h1>
<p id="link-problem" class="problem">{escape(why)} Ask the merchant for a new link.</p>
</main>
</body>
</html>
"""
    )


def page_routes(setup_intents: SetupIntents) -> list[Route]:
    async def card_page(request: Request) -> Response:
        si_id = request.path_params["si"]
        secret = request.query_params.get(QUERY_KEY, "")
        view = await run_in_threadpool(setup_intents.card_page, si_id, secret)
        if view.refusal is None:
            status, body, script = 200, form_html(view), True
        else:
            status, why = _refusal(view.refusal)
            body, script = refusal_html(why), False
        headers = {
            **_COMMON_HEADERS,
            "Content-Security-Policy": content_security_policy(view.origins, script=script),
        }
        return Response(body, status, headers, media_type="text/html; charset=utf-8")

    async def asset(request: Request) -> Response:
        found = _BY_NAME.get(request.path_params["name"])
        if found is None:
            missing = NotFound(f"No asset {request.url.path}.")
            return problem_for(missing, trace_id_of(request), request)
        headers = {
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        }
        return Response(found.body, 200, headers, media_type=found.media_type)

    return [
        Route(ASSETS + "{name}", asset, methods=["GET"]),
        Route("/setup/{si}", card_page, methods=["GET"]),
    ]
