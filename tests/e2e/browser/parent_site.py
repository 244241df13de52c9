"""What the browser tests put around the hosted card page: a merchant's shop (an account on a real
server, its setup intents, its page links) and a parent site, a small HTTP server on a chosen
loopback address that serves pages the test writes (the merchant's checkout page that frames the
card page). Linux routes all of 127/8 to loopback, so a parent on 127.0.0.1 is an origin the
sandbox default allows and one on 127.0.0.2 is not."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import Frame, Page, expect

from cardkeep.bootstrap import Runtime
from tests.e2e.harness import SI_FIELDS, VERSION, Merchant, Server, http_client

# Sandbox test cards (README "Sandbox cards").
APPROVED = "5200 0000 0000 1005"
APPROVED_2 = "5200 0000 0000 0056"
DECLINED = "4000 0000 0000 0002"  # "Do not honour"
DECLINED_FUNDS = "4000 0000 0000 9995"  # "Insufficient funds"
FUTURE_EXPIRY = "12/30"
PAST_EXPIRY = "01/24"
CVV = "123"

SHOP_NAME = "Trattoria Prova"
SECRET_LIFETIME = 30 * 60  # seconds, on the account's clock
MAX_ATTEMPTS = 5


@dataclass
class Shop:
    """One sandbox account on ``server``: its key, id and name, and its setup intents."""

    server: Server
    name: str
    mode: str = "sandbox"
    key: str = field(init=False)
    account_id: str = field(init=False)
    merchant: Merchant = field(init=False)

    def __post_init__(self) -> None:
        self.key = self.server.create_account(self.name, self.mode)
        with Runtime.open(self.server.settings) as runtime:
            self.account_id = runtime.services.accounts.authenticate(self.key).id
        self.merchant = Merchant(self.server, self.key)

    def close(self) -> None:
        self.merchant.close()

    def set_origins(self, origins: list[str]) -> None:
        """What ``cardkeep accounts origins ACCOUNT ORIGIN...`` does, through the service."""
        with Runtime.open(self.server.settings) as runtime:
            runtime.services.accounts.set_origins(self.account_id, origins)

    def new_si(self, **fields: Any) -> dict[str, Any]:
        """A setup intent created on the API listener with plain Dojo fields."""
        r = self.merchant.api.post("/setup-intents", json={**SI_FIELDS, **fields})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["status"] == "Created"
        return body

    def page_url(self, si: dict[str, Any], secret: str | None = None) -> str:
        secret = si["clientSessionSecret"] if secret is None else secret
        return f"{self.server.pci_url}/setup/{si['id']}?clientSessionSecret={quote(secret)}"

    def status(self, si_id: str) -> str:
        r = self.merchant.get_si(si_id)
        assert r.status_code == 200, r.text
        return str(r.json()["status"])

    def post_card(
        self, si: dict[str, Any], number: str, expiry: str = FUTURE_EXPIRY, secret: str = ""
    ) -> httpx.Response:
        """What the page's script sends, straight to the card endpoint."""
        headers = {
            "Authorization": f"Basic {secret or si['clientSessionSecret']}",
            "version": VERSION,
        }
        body = {
            "cardDetails": {
                "cardNumber": number.replace(" ", ""),
                "cardName": "Test Cardholder",
                "expiryDate": expiry,
                "cv2": CVV,
            },
            "mitConsentGiven": True,
        }
        with http_client(self.server.pci_url, headers) as pci:
            return pci.post(f"/setup-intents/public/{si['id']}/card", json=body)


def origin_of(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


class ParentSite:
    """A threaded HTTP server on ``host`` serving the pages put in ``pages`` (path -> HTML)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                html = pages.get(self.path.split("?", 1)[0])
                if html is None:
                    self.send_error(404)
                    return
                body = html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ParentSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, path: str, html: str) -> str:
        """Serve ``html`` at ``path``; its URL."""
        self.pages[path] = html
        return self.origin + path


# Every page below records each message it receives in window.received ({origin, data}), so a
# test reads them with page.evaluate / frame.evaluate.
RECORDER = """
window.received = [];
window.addEventListener("message", (e) => { window.received.push({origin: e.origin, data: e.data}); });
"""


def checkout_page(card_url: str, *, hello: bool = True, sibling_url: str | None = None) -> str:
    """The merchant's checkout page: the card page in ``<iframe id="card">`` (``frames[0]``),
    on its load the hello posted to the card page's origin only (when ``hello``), and optionally
    a sibling iframe (``frames[1]``) from another site. ``window.cardLoads`` counts the card
    iframe's load events (a frame blocked by CSP still fires one)."""
    pci_origin = origin_of(card_url)
    sibling = (
        f'<iframe id="sibling" title="Other" src="{sibling_url}" width="200" height="80"></iframe>'
        if sibling_url
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Checkout</title></head>
<body>
<h1>Checkout</h1>
<iframe id="card" title="Card details" src="{card_url}" width="480" height="760"></iframe>
{sibling}
<script>
{RECORDER}
window.cardLoads = 0;
const card = document.getElementById("card");
card.addEventListener("load", () => {{
  window.cardLoads += 1;
  if ({json.dumps(hello)}) {{
    card.contentWindow.postMessage({{type: "cardkeep.hello"}}, {json.dumps(pci_origin)});
  }}
}});
</script>
</body></html>
"""


def sibling_page(pci_origin: str) -> str:
    """A page framed next to the card page: ``window.sayHello()`` posts the hello into
    ``parent.frames[0]`` (the card page) from this page's own origin."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Other</title></head>
<body><p>Another frame</p>
<script>
{RECORDER}
window.sayHello = () => {{
  parent.frames[0].postMessage({{type: "cardkeep.hello"}}, {json.dumps(pci_origin)});
}};
</script>
</body></html>
"""


def plain_page(title: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><script>{RECORDER}</script></body></html>
"""


def fill_card(
    where: Page | Frame,
    number: str,
    expiry: str = FUTURE_EXPIRY,
    *,
    name: str = "Test Cardholder",
    cvv: str = CVV,
    consent: bool = True,
) -> None:
    """Type the card into the form the way a customer does (key by key), tick the consent."""
    where.locator("#name").fill("")
    where.locator("#name").press_sequentially(name)
    where.locator("#number").fill("")
    where.locator("#number").press_sequentially(number.replace(" ", ""))
    where.locator("#expiry").fill("")
    # The digits only: the field puts the slash in after the month as they are typed.
    where.locator("#expiry").press_sequentially(expiry.replace("/", ""))
    where.locator("#cvv").fill("")
    where.locator("#cvv").press_sequentially(cvv)
    if consent:
        where.locator("#consent").check()


def outcome(where: Page | Frame) -> tuple[str | None, str | None]:
    """``(document.body.dataset.outcome, document.body.dataset.status)``."""
    got = where.evaluate("[document.body.dataset.outcome, document.body.dataset.status]")
    return got[0], got[1]


def wait_outcome(where: Page | Frame) -> tuple[str, str]:
    """Wait until the page has answered an attempt (``data-outcome`` set; a test that submits
    again first clears it with ``clear_outcome``); the outcome and status. (Playwright's
    wait_for_function evaluates a string, which the page's CSP forbids: the wait is an expect.)"""
    expect(where.locator("body")).to_have_attribute("data-outcome", re.compile(".+"))
    got, status = outcome(where)
    assert got is not None
    assert status is not None
    return got, status


def clear_outcome(where: Page | Frame) -> None:
    where.evaluate("delete document.body.dataset.outcome")
