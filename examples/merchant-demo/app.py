"""A demo merchant for cardkeep: a restaurant that takes a card when a table is booked and charges
a no-show fee later.

The site never sees card data. It creates a setup intent on cardkeep's API listener, embeds
cardkeep's hosted card page (PCI listener) in an iframe, learns the outcome from the page's
``postMessage`` and, when the guest does not come, creates and charges a payment intent on the
API listener. Bookings are kept in memory.

    python examples/merchant-demo/app.py --api-url http://127.0.0.1:8000 \
        --pci-url http://127.0.0.1:8001 --key-file var/sandbox-key.txt
"""

from __future__ import annotations

import argparse
import html
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

VERSION = "2025-09-10"
STATIC_DIR = Path(__file__).resolve().parent / "static"
RESTAURANT = "The Sandbox Bistro"
FEE = {"value": 2000, "currencyCode": "GBP"}
FEE_TEXT = "£20.00"
TERMS = f"If you do not arrive, a no-show fee of {FEE_TEXT} will be charged to this card."
MAX_PARTY = 12
MAX_NAME = 100
MAX_FORM_BYTES = 4096


class CardkeepError(Exception):
    """A cardkeep answer other than 2xx (its ProblemDetails), or no answer at all."""

    def __init__(self, status: int, title: str, detail: str, code: str) -> None:
        super().__init__(f"{status} {code}: {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code


class Cardkeep:
    """The few calls of cardkeep's API listener that the restaurant makes, with its secret key."""

    def __init__(self, api_url: str, api_key: str, transport: httpx.AsyncBaseTransport | None):
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Basic {api_key}", "version": VERSION},
            timeout=15,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        try:
            resp = await self._client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise CardkeepError(
                502,
                "cardkeep did not answer",
                f"{method} {path} failed: {type(exc).__name__}.",
                "unreachable",
            ) from exc
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if resp.is_success and isinstance(doc, dict):
            return doc
        problem = doc if isinstance(doc, dict) else {}
        raise CardkeepError(
            resp.status_code,
            str(problem.get("title") or resp.reason_phrase or "Error"),
            str(problem.get("detail") or ""),
            str(problem.get("code") or f"http_{resp.status_code}"),
        )

    async def create_setup_intent(self, reference: str, redirect_url: str) -> dict[str, Any]:
        return await self._call(
            "POST",
            "/setup-intents",
            {
                "reference": reference,
                "terms": TERMS,
                "intendedAmount": FEE,
                "merchantInitiatedTransactionType": "NoShow",
                "config": {"redirectUrl": redirect_url},
            },
        )

    async def setup_intent(self, si_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/setup-intents/{quote(si_id, safe='')}")

    async def refresh_secret(self, si_id: str) -> dict[str, Any]:
        path = f"/setup-intents/{quote(si_id, safe='')}/refresh-client-session-secret"
        return await self._call("POST", path)

    async def create_payment_intent(self, si_id: str, reference: str, key: str) -> dict[str, Any]:
        body = {
            "setupIntentId": si_id,
            "amount": FEE,
            "reference": reference,
            "description": "No-show fee",
        }
        return await self._call("POST", "/payment-intents", body, idempotency_key=key)

    async def payment_intent(self, pi_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/payment-intents/{quote(pi_id, safe='')}")

    async def charge(self, pi_id: str, key: str) -> dict[str, Any]:
        path = f"/payment-intents/{quote(pi_id, safe='')}/charge"
        return await self._call("POST", path, idempotency_key=key)


@dataclass
class Booking:
    id: str
    guest_name: str
    party_size: int
    setup_intent_id: str
    client_secret: str
    secret_expires_at: datetime | None
    payment_intent_id: str | None = None
    charge_attempts: int = 0
    charge_result: str | None = None  # e.g. "Successful: DEPOSITED"
    error: CardkeepError | None = None  # shown once, on the next render

    @property
    def reference(self) -> str:
        return f"booking-{self.id}"


def origin_of(url: str) -> str:
    """The web origin of an http(s) URL, as a browser writes it in ``MessageEvent.origin``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 80 if scheme == "http" else 443
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{scheme}://{host}{port}"


def parse_expiry(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- HTML -----------------------------------------------------------------------------------------

e = html.escape


def page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    doc = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · {e(RESTAURANT)}</title>
<link rel="stylesheet" href="/static/demo.css">
<script src="/static/demo.js"></script>
</head>
<body>
<header class="site"><a href="/">{e(RESTAURANT)}</a>
<span class="tag">a demo merchant for cardkeep (sandbox)</span></header>
{body}
</body>
</html>
"""
    return HTMLResponse(doc, status_code=status_code)


def problem_html(err: CardkeepError) -> str:
    detail = f"<p>{e(err.detail)}</p>" if err.detail else ""
    return f"""<div class="problem" id="problem" role="alert">
<h2>cardkeep answered: {e(err.title)}</h2>
{detail}
<p class="meta">code <code>{e(err.code)}</code>, HTTP {err.status}</p>
</div>"""


def booking_form(name: str = "", party: str = "2", message: str = "") -> str:
    error = f'<p class="field-error" role="alert">{e(message)}</p>' if message else ""
    return f"""<main>
<h1>Book a table</h1>
<p>We hold your table with a card. Nothing is charged now: if you do not arrive, a no-show fee of
{FEE_TEXT} is charged to the card.</p>
<form method="post" action="/bookings" class="card">
<label for="guest-name">Your name</label>
<input id="guest-name" name="guest_name" type="text" required maxlength="{MAX_NAME}"
 autocomplete="name" value="{e(name)}">
<label for="party-size">Guests</label>
<input id="party-size" name="party_size" type="number" required min="1" max="{MAX_PARTY}"
 value="{e(party)}">
{error}
<button id="book" type="submit">Book a table</button>
</form>
</main>"""


def not_found() -> HTMLResponse:
    return page(
        "Not found", '<main><h1>No such booking</h1><a href="/">Book a table</a></main>', 404
    )


class Demo:
    def __init__(self, api_url: str, pci_url: str, api_key: str, cardkeep: Cardkeep) -> None:
        self.api_url = api_url.rstrip("/")
        self.pci_url = pci_url.rstrip("/")
        self.pci_origin = origin_of(pci_url)
        self.api_key = api_key
        self.cardkeep = cardkeep
        self.bookings: dict[str, Booking] = {}

    # GET /
    async def home(self, request: Request) -> Response:
        return page("Book a table", booking_form())

    # POST /bookings
    async def create_booking(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return page("Book a table", booking_form(message="The form is too large."), 413)
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
        name = (fields.get("guest_name") or [""])[0].strip()
        party = (fields.get("party_size") or [""])[0].strip()
        if not name or len(name) > MAX_NAME:
            form = booking_form(name[:MAX_NAME], party, f"Give a name of 1 to {MAX_NAME} letters.")
            return page("Book a table", form, 400)
        if not party.isdigit() or not 1 <= int(party) <= MAX_PARTY:
            form = booking_form(name, party, f"Guests: a number from 1 to {MAX_PARTY}.")
            return page("Book a table", form, 400)
        booking_id = secrets.token_hex(4)
        redirect_url = str(request.url_for("booking", booking_id=booking_id))
        try:
            si = await self.cardkeep.create_setup_intent(f"booking-{booking_id}", redirect_url)
        except CardkeepError as err:
            return page("Book a table", problem_html(err) + booking_form(name, party), 502)
        self.bookings[booking_id] = Booking(
            id=booking_id,
            guest_name=name,
            party_size=int(party),
            setup_intent_id=str(si["id"]),
            client_secret=str(si["clientSessionSecret"]),
            secret_expires_at=parse_expiry(si.get("clientSessionSecretExpirationDate")),
        )
        return RedirectResponse(f"/bookings/{booking_id}", status_code=303)

    def _booking(self, request: Request) -> Booking | None:
        return self.bookings.get(request.path_params["booking_id"])

    # GET /bookings/{id} (the hosted page's redirectUrl too: its query is ignored)
    async def show_booking(self, request: Request) -> Response:
        booking = self._booking(request)
        if booking is None:
            return not_found()
        errors = [booking.error] if booking.error else []
        booking.error = None
        si: dict[str, Any] = {}
        try:
            si = await self.cardkeep.setup_intent(booking.setup_intent_id)
        except CardkeepError as err:
            errors.append(err)
        status = str(si.get("status", "unknown"))
        if status == "Created" and self._secret_expired(booking):
            try:
                await self._refresh(booking)
            except CardkeepError as err:
                errors.append(err)
        pi_status = "no charge yet"
        if booking.payment_intent_id:
            try:
                pi = await self.cardkeep.payment_intent(booking.payment_intent_id)
                pi_status = str(pi.get("status", "unknown"))
            except CardkeepError as err:
                errors.append(err)
                pi_status = "unknown"
        body = self._booking_html(booking, si, status, pi_status, errors)
        resp = page(f"Booking {booking.id}", body)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def _secret_expired(self, booking: Booking) -> bool:
        expires = booking.secret_expires_at
        return expires is not None and expires <= datetime.now(UTC)

    async def _refresh(self, booking: Booking) -> None:
        si = await self.cardkeep.refresh_secret(booking.setup_intent_id)
        booking.client_secret = str(si["clientSessionSecret"])
        booking.secret_expires_at = parse_expiry(si.get("clientSessionSecretExpirationDate"))

    def _booking_html(
        self,
        booking: Booking,
        si: dict[str, Any],
        status: str,
        pi_status: str,
        errors: list[CardkeepError],
    ) -> str:
        problems = "\n".join(problem_html(err) for err in errors)
        terms = str(si.get("terms") or TERMS)
        card = si.get("paymentDetails", {}).get("card", {}) if si else {}
        masked = card.get("cardNumber") if isinstance(card, dict) else None
        card_line = f"<dt>Card on file</dt><dd>{e(str(masked))}</dd>" if masked else ""
        frame = ""
        if status == "Created":
            query = urlencode({"clientSessionSecret": booking.client_secret})
            src = f"{self.pci_url}/setup/{quote(booking.setup_intent_id, safe='')}?{query}"
            expires = booking.secret_expires_at
            until = f" The link is valid until {expires:%H:%M} UTC." if expires else ""
            frame = f"""<section class="card-entry">
<h2>Hold the table with a card</h2>
<p class="note">The card form below is served by cardkeep's PCI listener; this site never sees
the card.{until}</p>
<iframe id="card-frame" title="Card details" src="{e(src)}"></iframe>
<form method="post" action="/bookings/{e(booking.id)}/refresh-link" class="inline">
<button id="refresh" type="submit" class="secondary">Refresh card link</button>
</form>
</section>"""
        charge_form = ""
        if pi_status != "Captured":
            charge_form = f"""<form method="post" action="/bookings/{e(booking.id)}/no-show">
<button id="charge" type="submit">Charge no-show fee</button>
</form>"""
        result = ""
        if booking.charge_result:
            last = e(booking.charge_result)
            result = f'<p>Last charge: <span id="charge-result">{last}</span></p>'
        return f"""<main id="booking" data-pci-origin="{e(self.pci_origin)}"
 data-booking-id="{e(booking.id)}" data-setup-intent-id="{e(booking.setup_intent_id)}">
<h1>Booking {e(booking.id)}</h1>
{problems}
<dl class="details">
<dt>Guest</dt><dd>{e(booking.guest_name)}</dd>
<dt>Party</dt><dd>{booking.party_size}</dd>
<dt>Reference</dt><dd>{e(booking.reference)}</dd>
<dt>Setup intent</dt><dd><code>{e(booking.setup_intent_id)}</code></dd>
<dt>Setup intent status</dt><dd id="si-status">{e(status)}</dd>
{card_line}
</dl>
<section class="terms">
<h2>No-show terms</h2>
<p>{e(terms)}</p>
</section>
{frame}
<p id="outcome" class="outcome" role="status" aria-live="polite"></p>
<section class="staff">
<h2>Staff: the guest did not come</h2>
<p>Charges the {FEE_TEXT} no-show fee to the card on file (a payment intent on the API
listener, then its charge).</p>
{charge_form}
<p>Payment intent status: <span id="pi-status">{e(pi_status)}</span></p>
{result}
</section>
</main>"""

    # GET /bookings/{id}/status
    async def booking_status(self, request: Request) -> Response:
        booking = self._booking(request)
        headers = {"Cache-Control": "no-store"}
        if booking is None:
            return JSONResponse({"error": "no such booking"}, 404, headers=headers)
        try:
            si = await self.cardkeep.setup_intent(booking.setup_intent_id)
        except CardkeepError as err:
            body = {"error": {"title": err.title, "detail": err.detail, "code": err.code}}
            return JSONResponse(body, 502, headers=headers)
        return JSONResponse({"setupIntentStatus": si.get("status")}, headers=headers)

    # POST /bookings/{id}/refresh-link
    async def refresh_link(self, request: Request) -> Response:
        booking = self._booking(request)
        if booking is None:
            return not_found()
        try:
            await self._refresh(booking)
        except CardkeepError as err:
            booking.error = err
        return RedirectResponse(f"/bookings/{booking.id}", status_code=303)

    # POST /bookings/{id}/no-show
    async def charge_no_show(self, request: Request) -> Response:
        booking = self._booking(request)
        if booking is None:
            return not_found()
        # A fresh Idempotency-Key for each click: cardkeep keeps 4xx answers under a key, so a
        # click after a refusal (no card yet, say) must not replay that refusal.
        booking.charge_attempts += 1
        attempt = f"{booking.reference}-{booking.charge_attempts}"
        try:
            if booking.payment_intent_id is None:
                pi = await self.cardkeep.create_payment_intent(
                    booking.setup_intent_id, f"{booking.reference} no-show", key=f"{attempt}-pi"
                )
                booking.payment_intent_id = str(pi["id"])
            charged = await self.cardkeep.charge(booking.payment_intent_id, key=f"{attempt}-charge")
            message = charged.get("message")
            booking.charge_result = str(charged.get("status")) + (f": {message}" if message else "")
        except CardkeepError as err:
            booking.error = err
        return RedirectResponse(f"/bookings/{booking.id}", status_code=303)


class SecurityHeaders:
    """Adds the demo's Content-Security-Policy (its own scripts and styles only, frames only from
    the PCI listener, never framed itself) and a few more headers to every response."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.extra = [
            (b"content-security-policy", csp.encode("ascii")),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    api_url: str,
    pci_url: str,
    api_key: str,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The demo site, talking to cardkeep's API listener at ``api_url`` with ``api_key`` and
    framing the hosted card page of the PCI listener at ``pci_url``."""
    cardkeep = Cardkeep(api_url, api_key, transport)
    demo = Demo(api_url, pci_url, api_key, cardkeep)
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'; frame-src {demo.pci_origin}; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
    routes = [
        Route("/", demo.home, methods=["GET"]),
        Route("/bookings", demo.create_booking, methods=["POST"]),
        Route("/bookings/{booking_id}", demo.show_booking, methods=["GET"], name="booking"),
        Route("/bookings/{booking_id}/status", demo.booking_status, methods=["GET"]),
        Route("/bookings/{booking_id}/refresh-link", demo.refresh_link, methods=["POST"]),
        Route("/bookings/{booking_id}/no-show", demo.charge_no_show, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await cardkeep.aclose()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders, csp=csp)],
    )
    app.state.demo = demo
    return app


def read_key(args: argparse.Namespace) -> str:
    if args.key:
        return str(args.key).strip()
    try:
        return Path(args.key_file).read_text("utf-8").strip()
    except OSError as exc:
        sys.exit(f"cannot read the key file {args.key_file}: {exc.strerror}")


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", default="http://127.0.0.1:8000", help="cardkeep API listener")
    parser.add_argument("--pci-url", default="http://127.0.0.1:8001", help="cardkeep PCI listener")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key", help="the account's secret key (sk_sandbox_...)")
    keys.add_argument(
        "--key-file", default="var/sandbox-key.txt", help="a file holding the secret key"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    app = create_app(args.api_url, args.pci_url, read_key(args))
    print(f"demo merchant: http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
