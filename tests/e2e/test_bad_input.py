"""Acceptance, over real HTTP: bad input gets the contract's 4xx ProblemDetails (CONTRACT §2, §3),
never a 500. A smoke test per error family against a real ``cardkeep serve``, for what only the real
stack shows: the server's own HTTP parsing (raw sockets, real Content-Length and chunked bodies),
its log file and its database file. The decoding rules themselves are tested in process, in
``tests/unit/test_bad_input.py``.

Every response seen through the fixtures here is checked on the way in: status below 500, and no
full PAN of the numbers this module sends, in the body or in a header.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.bad_input import (
    BAD_AUTH,
    LUHN_BAD,
    NOT_JSON,
    NOT_UTF8,
    PI_FIELDS,
    SENT_PANS,
    UNKNOWN_PI,
    UNKNOWN_SI,
    check_401,
    create_body,
    guard,
    problem,
)
from tests.e2e.harness import APPROVED_CARD, SI_FIELDS, VERSION, Merchant, Server, card, http_client

# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def merchant(merchant: Merchant) -> Merchant:
    guard(merchant.api)
    guard(merchant.pci)
    return merchant


@pytest.fixture
def bare(server: Server) -> Iterator[dict[str, httpx.Client]]:
    """Clients per listener with no default headers at all."""
    clients = {
        "api": guard(http_client(server.api_url)),
        "pci": guard(http_client(server.pci_url)),
    }
    yield clients
    for c in clients.values():
        c.close()


def log_through(server: Server, r: httpx.Response) -> str:
    """The server's log once it holds the access line of ``r`` (found by its trace id): the line is
    written after the response is sent, so reading at once may miss the latest requests."""
    trace = r.headers["traceparent"]
    deadline = time.monotonic() + 10
    while trace not in (log := server.log_text()):
        assert time.monotonic() < deadline, f"{r.request.url.path} ({trace}) never reached the log"
        time.sleep(0.02)
    return log


def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is over a socket; the response's (status, headers, body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before a response: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        while len(body) < int(headers.get("content-length", "0")):
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed inside the body: {body!r}"
            body += chunk
    for pan in SENT_PANS:
        assert pan.encode() not in data + body, f"the response leaked a PAN: {data + body!r}"
    return int(status_line.split()[1]), headers, body


# -- one smoke test per error family ---------------------------------------------------------------


@pytest.mark.parametrize("listener", ["api", "pci"])
def test_bad_credentials_get_401_with_challenge(
    bare: dict[str, httpx.Client], server: Server, listener: str
) -> None:
    for name in ("missing", "unknown_key", "unknown_key_rfc7617", "bearer", "basic_not_base64"):
        auth = BAD_AUTH[name]
        headers = {"version": VERSION}
        if auth is not None:
            headers["Authorization"] = auth
        r = bare[listener].post("/setup-intents", headers=headers, json=create_body(listener))
        check_401(r, auth)
        if auth is not None and auth.startswith("Basic sk_"):
            assert auth.partition(" ")[2] not in log_through(server, r)


def test_missing_or_bad_version_is_invalid_version(
    bare: dict[str, httpx.Client], merchant: Merchant
) -> None:
    for listener in ("api", "pci"):
        for version in (None, "banana", "2021-01-01"):
            headers = {"Authorization": f"Basic {merchant.key}"}
            if version is not None:
                headers["version"] = version
            r = bare[listener].post("/setup-intents", headers=headers, json=create_body(listener))
            problem(r, 400, "invalid_version")


def test_validation_errors_are_all_listed_together(merchant: Merchant) -> None:
    problem(
        merchant.api.post("/setup-intents", json={}),
        400,
        "validation_error",
        {"Reference", "MerchantInitiatedTransactionType", "Terms"},
    )
    r = merchant.pci.post(
        "/setup-intents",
        json={
            **SI_FIELDS,
            "reference": "r" * 61,
            "intendedAmount": {"value": 1.5, "currencyCode": "GBP"},
            "cardDetails": card(LUHN_BAD, "13/29", "12"),
            "mitConsentGiven": False,
        },
    )
    problem(
        r,
        400,
        "validation_error",
        {
            "Reference",
            "IntendedAmount.Value",
            "CardDetails.CardNumber",
            "CardDetails.ExpiryDate",
            "CardDetails.Cv2",
            "MitConsentGiven",
        },
    )


@pytest.mark.parametrize("listener", ["api", "pci"])
def test_malformed_json_is_a_validation_error_on_dollar(merchant: Merchant, listener: str) -> None:
    client = merchant.api if listener == "api" else merchant.pci
    headers = {"Content-Type": "application/json"}
    r = client.post("/setup-intents", content=b'{"reference": ', headers=headers)
    body = problem(r, 400, "validation_error", {"$"})
    assert body["errors"] == NOT_JSON


def test_a_body_that_is_not_utf8_is_a_validation_error(merchant: Merchant) -> None:
    for client in (merchant.api, merchant.pci):
        headers = {"Content-Type": "application/json"}
        r = client.post("/setup-intents", content=NOT_UTF8, headers=headers)
        assert problem(r, 400, "validation_error", {"$"})["errors"] == NOT_JSON


def test_card_data_on_the_api_listener_is_refused(merchant: Merchant, server: Server) -> None:
    extras = (
        {"cardDetails": card()},
        {"cardNumber": APPROVED_CARD},
        {"cardDetails": card(LUHN_BAD)},
    )
    for extra in extras:
        r = merchant.api.post("/setup-intents", json={**SI_FIELDS, **extra})
        problem(r, 400, "card_data_not_accepted")
        r = merchant.api.post("/payment-intents", json={**PI_FIELDS, **extra})
        problem(r, 400, "card_data_not_accepted")
    log = log_through(server, r)
    assert APPROVED_CARD not in log
    assert LUHN_BAD not in log


def test_unknown_paths_and_ids_are_404(merchant: Merchant) -> None:
    problem(merchant.api.get("/nope"), 404, "not_found")
    problem(merchant.pci.get(f"/payment-intents/{UNKNOWN_PI}"), 404, "not_found")
    for the_id in (UNKNOWN_SI, "x" * 4000, "%00", "%E2%98%83"):
        problem(merchant.api.get(f"/setup-intents/{the_id}"), 404, "not_found")
        problem(merchant.api.post(f"/payment-intents/{the_id}/charge"), 404, "not_found")


def test_wrong_method_is_405_with_allow(merchant: Merchant) -> None:
    for client, method, path, allowed in (
        (merchant.api, "PUT", "/setup-intents", {"POST"}),
        (merchant.api, "PATCH", f"/setup-intents/{UNKNOWN_SI}", {"GET", "DELETE"}),
        (merchant.pci, "DELETE", "/setup-intents", {"POST"}),
    ):
        r = client.request(method, path)
        problem(r, 405, "method_not_allowed")
        allow = {m.strip().upper() for m in r.headers["allow"].split(",") if m.strip()}
        assert allowed <= allow, f"Allow: {r.headers['allow']}, wanted at least {allowed}"
        assert method not in allow


@pytest.mark.parametrize("listener", ["api", "pci"])
def test_body_over_64_kib_is_413(merchant: Merchant, server: Server, listener: str) -> None:
    client = merchant.api if listener == "api" else merchant.pci
    base = json.dumps({**create_body(listener), "padding": ""}).encode()
    pad = 64 * 1024 - len(base)

    def body(extra: int) -> bytes:
        return json.dumps({**create_body(listener), "padding": "p" * (pad + extra)}).encode()

    assert len(body(0)) == 64 * 1024
    r = client.post("/setup-intents", content=body(0))
    assert r.status_code == 200, r.text
    problem(client.post("/setup-intents", content=body(1)), 413, "payload_too_large")
    problem(client.post("/setup-intents", content=b"x" * 200_000), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is only known by reading
        data = body(10_000)
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    r = client.post("/setup-intents", content=chunks())
    assert r.request.headers["transfer-encoding"] == "chunked"
    problem(r, 413, "payload_too_large")

    # A declared length over the limit is answered before any of the body is sent.
    url = server.api_url if listener == "api" else server.pci_url
    request = (
        "POST /setup-intents HTTP/1.1\r\nHost: cardkeep\r\n"
        f"Authorization: Basic {merchant.key}\r\nversion: {VERSION}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    started = time.monotonic()
    status, headers, raw = raw_exchange(url, request.encode())
    assert status == 413, raw
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(raw)["code"] == "payload_too_large"
    assert time.monotonic() - started < 5


def test_malformed_http_is_refused_without_a_500(server: Server) -> None:
    """The server's own HTTP parsing: never reaches the app, answered 400, nothing echoed."""
    for url in (server.api_url, server.pci_url):
        for request in (
            f"GARBAGE {APPROVED_CARD}\r\n\r\n".encode(),
            f"POST /setup-intents?card={APPROVED_CARD} HTTP/1.1\r\nHost: cardkeep\r\n"
            "Content-Length: nope\r\n\r\n".encode(),
            b"POST /setup-intents HTTP/1.1\r\nHost: cardkeep\r\n"
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ):
            status, _, body = raw_exchange(url, request)
            assert status == 400, body
        r = httpx.get(f"{url}/health", timeout=10)
        assert r.status_code == 200
        assert APPROVED_CARD not in log_through(server, r)


def test_secret_keys_and_pans_never_reach_the_log(merchant: Merchant, server: Server) -> None:
    merchant.create_si()
    merchant.pci_create()
    problem(merchant.pci_create(card(LUHN_BAD)), 400, "validation_error")
    r = merchant.get_si(UNKNOWN_SI)
    problem(r, 404, "not_found")
    log = log_through(server, r)
    assert merchant.key not in log
    for pan in SENT_PANS:
        assert pan not in log


def test_a_failed_card_create_stores_nothing(merchant: Merchant, server: Server) -> None:
    reference = f"nothing-stored-{secrets.token_hex(6)}"
    r = merchant.pci_create(card(LUHN_BAD), reference=reference)
    problem(r, 400, "validation_error", {"CardDetails.CardNumber"})
    assert reference.encode() not in server.stored_bytes()
