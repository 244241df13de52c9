"""What the bad-input tests share, in process (``tests/unit/test_bad_input.py``) and over real HTTP
(``tests/e2e/test_bad_input.py``): the inputs, the check every response passes on the way in, and
the contract's ProblemDetails assertion (CONTRACT §2, §3)."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any, TypeVar

import httpx

from tests.merchant import APPROVED_CARD, SI_FIELDS, TEST_PANS, card
from tests.world import SyncClient

LUHN_BAD = "5200000000001006"  # the approved test card with its check digit off by one
AMEX = "378282246310005"  # Luhn-valid, AMEX: not in merchantConfig by default
SENT_PANS = (*TEST_PANS, LUHN_BAD, AMEX)
TRACE_ID = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
TYPES = {
    400: "https://tools.ietf.org/html/rfc7231#section-6.5.1",
    404: "https://tools.ietf.org/html/rfc7231#section-6.5.4",
    405: "https://tools.ietf.org/html/rfc7231#section-6.5.5",
    413: "https://tools.ietf.org/html/rfc7231#section-6.5.11",
}
UNKNOWN_SI = "si_sandbox_AAAAAAAAAAAAAAAAAAAAAA"
UNKNOWN_PI = "pi_sandbox_AAAAAAAAAAAAAAAAAAAAAA"
PI_FIELDS: dict[str, Any] = {
    "amount": {"value": 1000, "currencyCode": "GBP"},
    "reference": "No-show fee",
}
WWW_AUTHENTICATE = 'Basic realm="cardkeep"'


# -- checks ----------------------------------------------------------------------------------------


def inspect_response(response: httpx.Response) -> None:
    """Every response: no 5xx, no full PAN anywhere in it."""
    response.read()
    where = f"{response.request.method} {response.request.url.path}"
    assert response.status_code < 500, f"{where} -> {response.status_code} {response.text}"
    seen = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for pan in SENT_PANS:
        assert pan not in seen, f"{where} leaked a PAN: {seen}"


C = TypeVar("C", httpx.Client, SyncClient)


def guard(client: C) -> C:
    """``client`` with every response passing ``inspect_response`` on the way in."""
    client.event_hooks["response"].append(inspect_response)
    return client


def problem(
    r: httpx.Response, status: int, code: str, errors: set[str] | None = None
) -> dict[str, Any]:
    """Assert ``r`` is the contract's ProblemDetails; ``errors`` is the exact set of error keys."""
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == status, f"{where} -> {r.status_code} {r.text}"
    assert r.headers["content-type"].split(";")[0].strip() == "application/problem+json", where
    body = r.json()
    assert body["status"] == status, body
    assert body["code"] == code, f"{where} -> {body}"
    assert isinstance(body["title"], str), body
    assert body["title"], body
    if status in TYPES:
        assert body["type"] == TYPES[status], body
    else:
        assert body["type"].startswith("https://tools.ietf.org/html/"), body
    assert TRACE_ID.match(body["traceId"]), body
    assert r.headers.get("traceparent") == body["traceId"], (dict(r.headers), body)
    if code == "validation_error":
        assert isinstance(body["errors"], dict), body
        assert body["errors"], body
        for key, messages in body["errors"].items():
            assert key, body
            assert isinstance(messages, list), body
            assert messages, body
            assert all(isinstance(m, str) and m for m in messages), body
        if errors is not None:
            assert set(body["errors"]) == errors, f"{where} -> {body['errors']}"
    else:
        assert "errors" not in body, body
    return body  # type: ignore[no-any-return]


# -- inputs ----------------------------------------------------------------------------------------


def b64_key(key: str) -> str:
    return base64.b64encode(f"{key}:".encode()).decode()


def random_key(mode: str = "sandbox") -> str:
    return f"sk_{mode}_{secrets.token_urlsafe(32)}"


def create_body(listener: str) -> dict[str, Any]:
    """A valid create body for ``POST /setup-intents`` on that listener."""
    if listener == "pci":
        return {**SI_FIELDS, "cardDetails": card()}
    return dict(SI_FIELDS)


BAD_AUTH = {
    "missing": None,
    "unknown_key": f"Basic {random_key()}",
    "unknown_prod_key": f"Basic {random_key('prod')}",
    "unknown_key_rfc7617": f"Basic {b64_key(random_key())}",
    "bearer": "Bearer x",
    "garbage": "garbage",
    "basic_without_credential": "Basic",
    "basic_not_base64": "Basic !!!not-a-key!!!",
    "basic_base64_without_colon": "Basic " + base64.b64encode(b"sk_sandbox_nokey").decode(),
}


def check_401(r: httpx.Response, auth: str | None) -> None:
    """``r`` is the contract's 401 with the Basic challenge, and does not echo the credential."""
    problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == WWW_AUTHENTICATE
    if auth is not None:
        credential = auth.partition(" ")[2].strip()
        if len(credential) > 8:
            assert credential not in r.text


NOT_UTF8 = b'{"reference": "\xff\xfe invalid utf-8"}'
MALFORMED_JSON = [
    b'{"reference": ',
    b"{'reference': 'single quotes'}",
    b'{"reference": "x",}',
    b"NaN",
    b"{reference: 1}",
    b'{"a": 1} trailing',
    NOT_UTF8,
]
NOT_JSON = {"$": ["The request body is not valid JSON."]}

FULLWIDTH_PAN = "".join(chr(0xFF10 + int(d)) for d in APPROVED_CARD)
