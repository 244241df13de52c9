"""The hosted card page's response, as served: its security headers, the one script pinned by
hash in the CSP and by SRI in the HTML, no inline script, one JS and one CSS file from
cardkeep itself, and the link's secret kept out of the server's log."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

from playwright.sync_api import Page, expect

from tests.e2e.browser.parent_site import Shop
from tests.e2e.harness import http_client


class Tags(HTMLParser):
    """The page's <script>, <link> and <form> tags and the text inside each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.styles: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.forms = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True
            self.inline.append("")
        elif tag == "link" and dict(attrs).get("rel") == "stylesheet":
            self.styles.append(dict(attrs))
        elif tag == "form":
            self.forms += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline[-1] += data


def csp_of(value: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def sri(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


def test_the_page_is_served_with_the_contract_s_headers_and_one_pinned_script(
    shop: Shop,
) -> None:
    si = shop.new_si()
    with http_client(shop.server.pci_url) as pci:
        r = pci.get(shop.page_url(si).removeprefix(shop.server.pci_url))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "no-store" in r.headers["cache-control"]
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = csp_of(r.headers["content-security-policy"])
        assert csp["default-src"] == ["'none'"]
        assert "'unsafe-inline'" not in csp.get("script-src", [])
        assert "'unsafe-eval'" not in csp.get("script-src", [])
        ancestors = csp["frame-ancestors"]
        assert any(re.fullmatch(r"http://127\.0\.0\.1(:\*)?", a) for a in ancestors), ancestors
        assert any(re.fullmatch(r"http://localhost(:\*)?", a) for a in ancestors), ancestors

        tags = Tags()
        tags.feed(r.text)
        assert tags.forms == 1
        assert len(tags.scripts) == 1, tags.scripts
        assert tags.inline == [""], "an inline script"
        assert not re.search(r"\son[a-z]+\s*=", r.text, re.I), "an inline event handler"
        script = tags.scripts[0]
        src, integrity = script.get("src"), script.get("integrity")
        assert src is not None
        assert src.startswith("/setup/assets/"), src
        assert integrity is not None
        assert integrity.startswith("sha384-")
        js = pci.get(src)
        assert js.status_code == 200
        assert "javascript" in js.headers["content-type"]
        assert sri(js.content) == integrity
        assert f"'{integrity}'" in csp["script-src"]

        assert len(tags.styles) == 1, tags.styles
        href = tags.styles[0].get("href")
        assert href is not None
        assert href.startswith("/setup/assets/"), href
        css = pci.get(href)
        assert css.status_code == 200
        assert "text/css" in css.headers["content-type"]
        if tags.styles[0].get("integrity"):
            assert sri(css.content) == tags.styles[0]["integrity"]

        # The outcome goes to the origin that said hello, never to any origin.
        assert not re.search(r"""postMessage\([^;]*["']\*["']""", js.text), "postMessage to '*'"


def test_frame_ancestors_are_the_account_s_own_origins(shop: Shop) -> None:
    shop.set_origins(["https://shop.example.com", "https://book.example.com:8443"])
    si = shop.new_si()
    with http_client(shop.server.pci_url) as pci:
        r = pci.get(shop.page_url(si).removeprefix(shop.server.pci_url))
    assert r.status_code == 200
    ancestors = csp_of(r.headers["content-security-policy"])["frame-ancestors"]
    assert sorted(ancestors) == ["https://book.example.com:8443", "https://shop.example.com"]


def test_a_prod_account_with_no_origins_lets_no_one_frame_the_page(shop: Shop) -> None:
    prod = Shop(shop.server, "Prod shop", mode="prod")
    try:
        si = prod.new_si()
        with http_client(prod.server.pci_url) as pci:
            r = pci.get(prod.page_url(si).removeprefix(prod.server.pci_url))
        assert r.status_code == 200, r.text
        assert csp_of(r.headers["content-security-policy"])["frame-ancestors"] == ["'none'"]
    finally:
        prod.close()


def test_the_invalid_link_page_has_the_same_headers(shop: Shop) -> None:
    si = shop.new_si()
    with http_client(shop.server.pci_url) as pci:
        r = pci.get(f"/setup/{si['id']}?clientSessionSecret=nope")
    assert 400 <= r.status_code < 500
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "no-store" in r.headers["cache-control"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert csp_of(r.headers["content-security-policy"])["default-src"] == ["'none'"]
    tags = Tags()
    tags.feed(r.text)
    assert tags.forms == 0
    assert all(not text.strip() for text in tags.inline)


def test_the_link_s_secret_never_reaches_the_server_log(page: Page, shop: Shop) -> None:
    si = shop.new_si()
    secret = si["clientSessionSecret"]
    page.goto(shop.page_url(si))
    expect(page.locator("#card-form")).to_be_visible()
    page.goto(shop.page_url(si, secret[:-1] + "x"))
    expect(page.locator("#link-problem")).to_be_visible()
    log = shop.server.log_text()
    assert f"/setup/{si['id']}" in log  # the requests were logged, without their query
    assert secret not in log
    assert secret[:-1] not in log
    assert "clientSessionSecret=" not in log
