"""Acceptance: no response, error or log line contains a full PAN or a CVV, and the database holds
neither in plaintext (CONTRACT §3, §4.3). The PAN may exist only as vault ciphertext.

One test drives the whole card flow with every sandbox test card and a distinctive CVV, plus the
variants that fail validation, collecting every response; then it searches the responses, the
server's log and the raw bytes of every file in the data directory.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from datetime import datetime
from typing import Any

import httpx

from tests.e2e.harness import (
    APPROVED_CARD,
    DECLINED_CARD,
    SI_FIELDS,
    TEST_PANS,
    VERSION,
    Merchant,
    Server,
    card,
)

CVV = "739"
AMEX_CVV = "7391"
AMEX = "378282246310005"


def _wrong_check_digit(pan: str) -> str:
    return pan[:-1] + str((int(pan[-1]) + 1) % 10)


def _grouped(pan: str, sep: str) -> str:
    return sep.join(pan[i : i + 4] for i in range(0, len(pan), 4))


# Every number this test sends as a card number: none may come back or be written in plaintext.
SENT_PANS = (*TEST_PANS, *(_wrong_check_digit(p) for p in TEST_PANS), AMEX, APPROVED_CARD + "0")

_CVV_IN_CONTEXT = re.compile(
    rf"(?i)c(?:v|vv|vc)2?[\"']?\s*[:=]\s*[\"']?(?:{CVV}|{AMEX_CVV})\b|\"(?:{CVV}|{AMEX_CVV})\""
)
_CVV_IN_CONTEXT_BYTES = re.compile(_CVV_IN_CONTEXT.pattern.encode())


def _text_forms(pan: str) -> list[str]:
    return [pan, _grouped(pan, " "), _grouped(pan, "-")]


def _byte_forms(pan: str) -> list[bytes]:
    forms: list[bytes] = []
    for text in _text_forms(pan):
        forms += [
            text.encode("ascii"),
            text.encode("utf-16-le"),
            text.encode("utf-16-be"),
            text.encode("utf-32-le"),
        ]
    raw = pan.encode()
    forms += [
        raw.hex().encode(),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    ]
    return forms


class Recorder:
    """Collects every response (status line, headers, body) seen by the merchant's clients."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        where = f"{response.request.method} {response.request.url} -> {response.status_code}"
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.seen.append((where, headers + "\n\n" + response.text))


def _authorized(merchant: Merchant, details: dict[str, str]) -> dict[str, Any]:
    r = merchant.pci_create(details)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Authorized", r.text
    return r.json()  # type: ignore[no-any-return]


def _flow_with_every_test_card(merchant: Merchant) -> dict[str, str]:
    """The whole card flow; returns {pan: setup intent id} for the created intents."""
    created: dict[str, str] = {}
    for pan in TEST_PANS:
        r = merchant.pci_create(card(pan, cv2=CVV), reference=f"leak-{pan[-4:]}")
        assert r.status_code == 200, r.text
        si = r.json()
        created[pan] = si["id"]
        assert merchant.get_si(si["id"]).status_code == 200
        if si["status"] == "Authorized":
            assert si["paymentDetails"]["card"]["cardNumber"] == pan[:6] + "******" + pan[-4:]
            declined_pi = merchant.create_pi(si["id"], 1051).json()  # sandbox: Insufficient funds
            r = merchant.charge(declined_pi["id"])
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "Declined"
            pi = merchant.create_pi(si["id"], 1000).json()
            r = merchant.charge(pi["id"])
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "Successful"
            assert merchant.api.get(f"/payment-intents/{pi['id']}").status_code == 200
            assert merchant.get_si(si["id"]).json()["status"] == "Completed"
            assert merchant.api.get(f"/setup-intents/public/{si['id']}").status_code < 500
        else:
            assert si["status"] == "Created", si
            assert [e["eventType"] for e in si["setupEvents"]] == ["Declined"]
            assert merchant.create_pi(si["id"]).status_code == 400
            assert merchant.api.delete(f"/setup-intents/{si['id']}").status_code == 200

    # Authorized, then closed: the vault record goes.
    closed = _authorized(merchant, card(cv2=CVV))
    r = merchant.api.delete(f"/setup-intents/{closed['id']}", params={"includeAuthorized": "true"})
    assert r.status_code == 200, r.text

    # Card past its expiry month at entry.
    r = merchant.pci_create(card(APPROVED_CARD, "01/20", CVV))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "CardExpired"
    return created


def _variants_that_fail_or_bend(merchant: Merchant) -> None:
    # Spaces and dashes are removed: accepted.
    for number in (_grouped(APPROVED_CARD, " "), _grouped(APPROVED_CARD, "-")):
        r = merchant.pci_create(card(number, cv2=CVV))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Authorized"
    # Validation failures that carry a real or nearly-real PAN and the CVV.
    failing: list[dict[str, Any]] = [
        *({"cardDetails": card(_wrong_check_digit(p), cv2=CVV)} for p in TEST_PANS),
        {"cardDetails": card(APPROVED_CARD + "0", cv2=CVV)},
        {"cardDetails": card(APPROVED_CARD, cv2=CVV[:2])},
        {"cardDetails": card(APPROVED_CARD, "13/39", CVV)},
        {"cardDetails": card(APPROVED_CARD, cv2=CVV), "mitConsentGiven": False},
        {"cardDetails": card(APPROVED_CARD, cv2=CVV), "reference": "r" * 61},
        {"cardDetails": {**card(cv2=CVV), "cardNumber": int(APPROVED_CARD)}},
        {"cardDetails": {**card(cv2=CVV), "cv2": int(CVV)}},
        {"cardDetails": card(AMEX, cv2=AMEX_CVV)},
    ]
    for extra in failing:
        r = merchant.pci.post("/setup-intents", json={**SI_FIELDS, **extra})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "validation_error"
    # Malformed JSON around a card.
    raw = f'{{"cardDetails": {{"cardNumber": "{APPROVED_CARD}", "cv2": "{CVV}"'.encode()
    r = merchant.pci.post("/setup-intents", content=raw)
    assert r.status_code == 400, r.text
    # Bytes that are not UTF-8 around a card (the status is test_bad_input's business).
    raw = f'{{"reference": "\xff", "cardDetails": {{"cardNumber": "{APPROVED_CARD}", '
    raw += f'"cv2": "{CVV}"}}}}'
    merchant.pci.post("/setup-intents", content=raw.encode("latin-1"))
    # Card data to the API listener.
    for body in (
        {**SI_FIELDS, "cardDetails": card(APPROVED_CARD, cv2=CVV)},
        {**SI_FIELDS, "cardNumber": APPROVED_CARD, "cv2": CVV},
        {"amount": {"value": 1000, "currencyCode": "GBP"}, "reference": "x", "cvv": CVV},
    ):
        for path in ("/setup-intents", "/payment-intents"):
            r = merchant.api.post(path, json=body)
            assert r.status_code == 400, r.text
            assert r.json()["code"] == "card_data_not_accepted"


def _cards_through_the_hosted_page(merchant: Merchant) -> str:
    """The page and its card endpoint (CONTRACT §9): a decline, then an approval, by the client
    session secret; the secret in the page's query string is never logged either."""
    r = merchant.create_si(reference="leak-page")
    assert r.status_code == 200, r.text
    si_id, secret = r.json()["id"], r.json()["clientSessionSecret"]
    page = merchant.pci.get(f"/setup/{si_id}", params={"clientSessionSecret": secret})
    assert page.status_code == 200, page.text
    headers = {"Authorization": f"Basic {secret}", "version": VERSION}
    path = f"/setup-intents/public/{si_id}/card"
    for pan, status in ((DECLINED_CARD, "Created"), (APPROVED_CARD, "Authorized")):
        body = {"cardDetails": card(pan, cv2=CVV), "mitConsentGiven": True}
        r = merchant.pci.post(path, json=body, headers=headers)
        assert (r.status_code, r.json()["status"]) == (200, status), r.text
    assert merchant.pci.get(page.url).status_code == 410  # used up
    return str(secret)


def _card_expires_by_the_clock(merchant: Merchant) -> None:
    now = datetime.fromisoformat(merchant.api.get("/sandbox/clock").json()["now"])
    expiry = f"{now.month:02d}/{(now.year + 1) % 100:02d}"
    si = _authorized(merchant, card(cv2=CVV, expiry=expiry))
    pi = merchant.create_pi(si["id"], 1000).json()
    r = merchant.advance(2 * 366 * 24 * 3600)
    assert r.status_code == 200, r.text
    assert merchant.get_si(si["id"]).json()["status"] == "CardExpired"
    assert merchant.charge(pi["id"]).status_code < 500


def _wait_for_log(server: Server, needle: str) -> str:
    deadline = time.monotonic() + 30  # generous: a loaded machine writes the line late
    while True:
        text = server.log_text()
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_no_pan_or_cvv_in_responses_logs_or_database(merchant: Merchant, server: Server) -> None:
    recorder = Recorder()
    merchant.api.event_hooks["response"].append(recorder)
    merchant.pci.event_hooks["response"].append(recorder)
    marker = f"leak-check-{secrets.token_hex(6)}"

    created = _flow_with_every_test_card(merchant)
    _variants_that_fail_or_bend(merchant)
    page_secret = _cards_through_the_hosted_page(merchant)
    r = merchant.create_si(reference=marker)
    assert r.status_code == 200, r.text
    _card_expires_by_the_clock(merchant)
    last = merchant.get_si(created[APPROVED_CARD])
    assert len(recorder.seen) > 50

    # 1. Responses: bodies and headers.
    for where, text in recorder.seen:
        for pan in SENT_PANS:
            for form in _text_forms(pan):
                assert form not in text, f"{where} contains a PAN:\n{text}"
        assert not _CVV_IN_CONTEXT.search(text), f"{where} contains the CVV:\n{text}"

    # 2. The server's log (waiting for the last request's line to be written).
    log = _wait_for_log(server, last.headers["traceparent"])
    assert last.headers["traceparent"] in log, "the log does not show the requests"
    for pan in SENT_PANS:
        for form in _text_forms(pan):
            assert form not in log, f"the server log contains {form}"
    match = _CVV_IN_CONTEXT.search(log)
    assert match is None, f"the server log contains the CVV: {match and match.group(0)}"
    assert merchant.key not in log
    assert page_secret not in log

    # 3. Every file in the data directory, the SQLite database, its WAL and SHM included.
    files = server.stored_files()
    if server.engine == "sqlite":
        assert server.db_path in files
    everything = b"".join(p.read_bytes() for p in files)
    assert marker.encode() in everything, "the database files do not show the writes"
    for path in files:
        data = path.read_bytes()
        for pan in SENT_PANS:
            for form in _byte_forms(pan):
                assert form not in data, f"{path.name} holds {form!r} in plaintext"
        match_b = _CVV_IN_CONTEXT_BYTES.search(data)
        assert match_b is None, f"{path.name} holds the CVV: {match_b and match_b.group(0)!r}"
        for form in (f'"{CVV}"', f'"{AMEX_CVV}"'):
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                assert form.encode(encoding) not in data, f"{path.name} holds {form}"
