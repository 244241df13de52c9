"""Bad input gets the contract's 4xx ProblemDetails (CONTRACT §2, §3), never a 500: the decoding
rules, in process. Both apps are built through the composition root (``tests/world.py``) and driven
over ``httpx.ASGITransport``; one ``World`` per test. ``tests/e2e/test_bad_input.py`` keeps a smoke
test per error family over real HTTP against a real server.

Every response seen through the fixtures here is checked on the way in: status below 500, and no
full PAN of the numbers this module sends, in the body or in a header. What cardkeep logs during a
test is captured as the server would write it, and must hold neither a PAN nor a secret key.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Message, Scope

from cardkeep.domain.account import Mode
from tests.bad_input import (
    AMEX,
    BAD_AUTH,
    FULLWIDTH_PAN,
    LUHN_BAD,
    MALFORMED_JSON,
    NOT_JSON,
    PI_FIELDS,
    SENT_PANS,
    TRACE_ID,
    UNKNOWN_PI,
    UNKNOWN_SI,
    WWW_AUTHENTICATE,
    b64_key,
    check_401,
    create_body,
    guard,
    problem,
)
from tests.merchant import APPROVED_CARD, SI_FIELDS, VERSION, card
from tests.world import InProcessMerchant, SyncClient, World, captured_log

# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def world() -> World:
    return World()


SECRET_KEY = re.compile(r"sk_(?:sandbox|prod)_[A-Za-z0-9_-]{16,}")


@pytest.fixture(autouse=True)
def log() -> Iterator[io.StringIO]:
    """What cardkeep logs during the test; afterwards it must hold no PAN and no secret key."""
    with captured_log() as buffer:
        yield buffer
    text = buffer.getvalue()
    for pan in SENT_PANS:
        assert pan not in text, f"the log holds a PAN: {text}"
    assert not SECRET_KEY.search(text), f"the log holds a secret key: {text}"


def _merchant(world: World, key: str | None = None) -> Iterator[InProcessMerchant]:
    m = world.merchant(key)
    guard(m.api)
    guard(m.pci)
    yield m
    m.close()


@pytest.fixture
def merchant(world: World) -> Iterator[InProcessMerchant]:
    yield from _merchant(world)


@pytest.fixture
def other_merchant(world: World) -> Iterator[InProcessMerchant]:
    """Another account of the same cardkeep."""
    _, _, key = world.services.accounts.create("other", Mode.SANDBOX)
    yield from _merchant(world, key)


@pytest.fixture
def bare(world: World) -> Iterator[dict[str, SyncClient]]:
    """Clients per listener with no default headers at all."""
    api, pci = world.bare_clients()
    clients = {"api": guard(api), "pci": guard(pci)}
    yield clients
    for c in clients.values():
        c.close()


# -- authentication (§2) ---------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["api", "pci"])
@pytest.mark.parametrize("auth", BAD_AUTH.values(), ids=BAD_AUTH.keys())
def test_bad_credentials_get_401_with_challenge(
    bare: dict[str, SyncClient], log: io.StringIO, listener: str, auth: str | None
) -> None:
    headers = {"version": VERSION}
    if auth is not None:
        headers["Authorization"] = auth
    client = bare[listener]
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/setup-intents", create_body(listener))
    ]
    if listener == "api":
        requests += [
            ("GET", f"/setup-intents/{UNKNOWN_SI}", None),
            ("DELETE", f"/setup-intents/{UNKNOWN_SI}", None),
            ("POST", "/payment-intents", PI_FIELDS),
            ("GET", f"/payment-intents/{UNKNOWN_PI}", None),
            ("POST", f"/payment-intents/{UNKNOWN_PI}/charge", None),
            ("GET", "/sandbox/clock", None),
        ]
    for method, path, body in requests:
        check_401(client.request(method, path, headers=headers, json=body), auth)
    assert '"status": 401' in log.getvalue()  # the log below is the one these requests wrote
    if auth is not None and auth.startswith("Basic sk_"):
        assert auth.partition(" ")[2] not in log.getvalue()


def test_a_valid_key_under_another_scheme_is_refused(
    bare: dict[str, SyncClient], merchant: InProcessMerchant
) -> None:
    for scheme in ("Bearer", "Token", "Digest"):
        r = bare["api"].post(
            "/setup-intents",
            headers={"version": VERSION, "Authorization": f"{scheme} {merchant.key}"},
            json=SI_FIELDS,
        )
        body = problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == WWW_AUTHENTICATE
        assert merchant.key not in r.text
        assert "must use the Basic scheme" in body["detail"], body


@pytest.mark.parametrize("listener", ["api", "pci"])
def test_rfc7617_form_of_the_key_works(
    bare: dict[str, SyncClient], merchant: InProcessMerchant, listener: str
) -> None:
    headers = {"version": VERSION, "Authorization": f"Basic {b64_key(merchant.key)}"}
    r = bare[listener].post("/setup-intents", headers=headers, json=create_body(listener))
    assert r.status_code == 200, r.text
    si = r.json()
    assert si["status"] == ("Authorized" if listener == "pci" else "Created")
    # The object belongs to the key's account: readable with the key in Dojo's raw form.
    assert merchant.get_si(si["id"]).status_code == 200
    if listener == "api":
        r = bare["api"].get(f"/setup-intents/{si['id']}", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["id"] == si["id"]


def test_secret_keys_never_reach_the_log(merchant: InProcessMerchant, log: io.StringIO) -> None:
    merchant.create_si()
    merchant.pci_create()
    problem(merchant.get_si(UNKNOWN_SI), 404, "not_found")
    assert f"/setup-intents/{UNKNOWN_SI}" in log.getvalue()  # the requests were logged
    assert merchant.key not in log.getvalue()


# -- version header (§2) ---------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["api", "pci"])
def test_missing_version_header_is_invalid_version(
    bare: dict[str, SyncClient], merchant: InProcessMerchant, listener: str
) -> None:
    headers = {"Authorization": f"Basic {merchant.key}"}
    r = bare[listener].post("/setup-intents", headers=headers, json=create_body(listener))
    problem(r, 400, "invalid_version")
    if listener == "api":
        for method, path in (
            ("GET", f"/setup-intents/{UNKNOWN_SI}"),
            ("GET", f"/payment-intents/{UNKNOWN_PI}"),
            ("POST", f"/payment-intents/{UNKNOWN_PI}/charge"),
            ("GET", "/sandbox/clock"),
        ):
            problem(bare["api"].request(method, path, headers=headers), 400, "invalid_version")


@pytest.mark.parametrize(
    "value",
    [
        "2021-01-01",
        "2022-04-06",
        "banana",
        "",
        "2025-13-01",
        "2025-02-30",
        "20250910",
        "2025-W37-3",
        "10-09-2025",
    ],
)
@pytest.mark.parametrize("listener", ["api", "pci"])
def test_bad_version_values_are_invalid_version(
    bare: dict[str, SyncClient], merchant: InProcessMerchant, listener: str, value: str
) -> None:
    headers = {"Authorization": f"Basic {merchant.key}", "version": value}
    r = bare[listener].post("/setup-intents", headers=headers, json=create_body(listener))
    problem(r, 400, "invalid_version")


@pytest.mark.parametrize(
    ("header", "value", "resolved"),
    [
        ("version", "2025-09-10", "2025-09-10"),
        ("Version", "2025-09-10", "2025-09-10"),
        ("VERSION", "2025-09-10", "2025-09-10"),
        ("version", "2022-04-07T00:00:00+00:00", "2022-04-07"),
        ("version", "2022-04-07", "2022-04-07"),
        ("version", "2024-03-01", "2024-02-05"),
        ("version", "2026-02-27", "2025-09-10"),
    ],
)
def test_good_version_values_resolve_to_a_release(
    bare: dict[str, SyncClient], merchant: InProcessMerchant, header: str, value: str, resolved: str
) -> None:
    headers = {"Authorization": f"Basic {merchant.key}", header: value}
    r = bare["api"].post("/setup-intents", headers=headers, json=SI_FIELDS)
    assert r.status_code == 200, r.text
    assert r.headers["version"] == resolved
    r = bare["pci"].post("/setup-intents", headers=headers, json=create_body("pci"))
    assert r.status_code == 200, r.text
    assert r.headers["version"] == resolved


@pytest.mark.parametrize("listener", ["api", "pci"])
def test_health_needs_neither_auth_nor_version(bare: dict[str, SyncClient], listener: str) -> None:
    r = bare[listener].get("/health")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok"}


# -- bodies (§2, §4.2) -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", MALFORMED_JSON)
@pytest.mark.parametrize("listener", ["api", "pci"])
def test_malformed_json_is_a_validation_error_on_dollar(
    merchant: InProcessMerchant, listener: str, raw: bytes
) -> None:
    client = merchant.api if listener == "api" else merchant.pci
    r = client.post("/setup-intents", content=raw, headers={"Content-Type": "application/json"})
    body = problem(r, 400, "validation_error", {"$"})
    assert body["errors"] == NOT_JSON


def test_malformed_json_on_other_endpoints(merchant: InProcessMerchant) -> None:
    si = merchant.authorized_si()
    pi = merchant.create_pi(si["id"]).json()
    for method, path in (
        ("POST", "/payment-intents"),
        ("POST", f"/payment-intents/{pi['id']}/charge"),
        ("POST", "/sandbox/clock/advance"),
    ):
        r = merchant.api.request(method, path, content=b"{not json")
        problem(r, 400, "validation_error", {"$"})
    # Nothing was charged by the malformed request.
    assert merchant.api.get(f"/payment-intents/{pi['id']}").json()["status"] == "Created"


@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b'"hello"', b"42", b"true", b"null", b""])
@pytest.mark.parametrize("listener", ["api", "pci"])
def test_a_body_that_is_not_an_object_is_400(
    merchant: InProcessMerchant, listener: str, raw: bytes
) -> None:
    client = merchant.api if listener == "api" else merchant.pci
    r = client.post("/setup-intents", content=raw, headers={"Content-Type": "application/json"})
    problem(r, 400, "validation_error")
    r = merchant.api.post("/payment-intents", content=raw)
    problem(r, 400, "validation_error")


def test_missing_required_fields_are_all_listed(merchant: InProcessMerchant) -> None:
    body = problem(
        merchant.api.post("/setup-intents", json={}),
        400,
        "validation_error",
        {"Reference", "MerchantInitiatedTransactionType", "Terms"},
    )
    assert body["detail"]
    problem(
        merchant.api.post("/payment-intents", json={}),
        400,
        "validation_error",
        {"Amount", "Reference"},
    )


def test_wrong_types_are_all_listed_in_one_response(merchant: InProcessMerchant) -> None:
    r = merchant.api.post(
        "/setup-intents",
        json={
            "reference": 123,
            "merchantInitiatedTransactionType": 5,
            "terms": ["a"],
            "intendedAmount": {"value": 10.5, "currencyCode": "GBP"},
            "description": {"x": 1},
            "expireAt": "tomorrow",
            "metadata": ["a", "b"],
            "customer": "alice",
        },
    )
    problem(
        r,
        400,
        "validation_error",
        {
            "Reference",
            "MerchantInitiatedTransactionType",
            "Terms",
            "IntendedAmount.Value",
            "Description",
            "ExpireAt",
            "Metadata",
            "Customer",
        },
    )


def test_wrong_types_in_payment_intent_create(merchant: InProcessMerchant) -> None:
    r = merchant.api.post(
        "/payment-intents",
        json={
            "amount": {"value": 10.5, "currencyCode": 826},
            "reference": "x" * 61,
            "setupIntentId": 17,
        },
    )
    problem(
        r,
        400,
        "validation_error",
        {"Amount.Value", "Amount.CurrencyCode", "Reference", "SetupIntentId"},
    )
    problem(
        merchant.api.post("/payment-intents", json={"amount": 1000, "reference": "x"}),
        400,
        "validation_error",
        {"Amount"},
    )


@pytest.mark.parametrize(
    "value",
    [
        10.5,
        "10.5",
        "1e3",
        True,
        0,
        -1,
        "-1",
        "",
        "--5",
        "1_000",
        " ",
        "ten",
        100_000_000_000,
        10**30,
        "9" * 5000,
        [1000],
        {"v": 1},
    ],
    ids=lambda v: repr(v)[:20],
)
def test_bad_amount_values(merchant: InProcessMerchant, value: Any) -> None:
    body = {**SI_FIELDS, "intendedAmount": {"value": value, "currencyCode": "GBP"}}
    problem(
        merchant.api.post("/setup-intents", json=body),
        400,
        "validation_error",
        {"IntendedAmount.Value"},
    )
    problem(
        merchant.api.post(
            "/payment-intents",
            json={**PI_FIELDS, "amount": {"value": value, "currencyCode": "GBP"}},
        ),
        400,
        "validation_error",
        {"Amount.Value"},
    )


@pytest.mark.parametrize("value", ["--1", "9" * 5000, 1.5], ids=lambda v: repr(v)[:12])
def test_bad_integers_in_item_lines(merchant: InProcessMerchant, value: Any) -> None:
    line = {"name": "Fee", "quantity": 1, "amountTotal": {"value": value, "currencyCode": "GBP"}}
    r = merchant.api.post("/payment-intents", json={**PI_FIELDS, "itemLines": [line]})
    body = problem(r, 400, "validation_error")
    assert all(k.startswith("ItemLines") for k in body["errors"]), body
    line = {**line, "amountTotal": PI_FIELDS["amount"], "quantity": value}
    r = merchant.api.post("/payment-intents", json={**PI_FIELDS, "itemLines": [line]})
    body = problem(r, 400, "validation_error")
    assert all(k.startswith("ItemLines") for k in body["errors"]), body


@pytest.mark.parametrize(
    "raw_value", [b"1e400", b"-1e400", b"9" * 5000, b"1" + b"0" * 400], ids=lambda v: repr(v)[:12]
)
def test_out_of_range_json_numbers_are_400(merchant: InProcessMerchant, raw_value: bytes) -> None:
    raw = b'{"reference": "r", "merchantInitiatedTransactionType": "NoShow", "terms": "t", '
    raw += b'"intendedAmount": {"value": ' + raw_value + b', "currencyCode": "GBP"}}'
    r = merchant.api.post("/setup-intents", content=raw)
    problem(r, 400, "validation_error")


@pytest.mark.parametrize("listener", ["api", "pci"])
@pytest.mark.parametrize("shape", ["arrays", "objects"])
def test_deeply_nested_json_is_400_not_500(
    merchant: InProcessMerchant, listener: str, shape: str
) -> None:
    depth = 5000
    if shape == "arrays":
        raw = b"[" * depth + b"]" * depth
    else:
        raw = b'{"a":' * depth + b"1" + b"}" * depth
    client = merchant.api if listener == "api" else merchant.pci
    problem(client.post("/setup-intents", content=raw), 400, "validation_error")


def test_amount_as_digit_string_is_accepted(merchant: InProcessMerchant) -> None:
    r = merchant.create_si(intendedAmount={"value": "1000", "currencyCode": "GBP"})
    assert r.status_code == 200, r.text
    assert r.json()["intendedAmount"] == {"value": 1000, "currencyCode": "GBP"}
    r = merchant.api.post(
        "/payment-intents", json={**PI_FIELDS, "amount": {"value": "1200", "currencyCode": "GBP"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["amount"] == {"value": 1200, "currencyCode": "GBP"}


def test_unsupported_currency_is_400(merchant: InProcessMerchant) -> None:
    r = merchant.create_si(intendedAmount={"value": 1000, "currencyCode": "USD"})
    problem(r, 400, "validation_error", {"IntendedAmount.CurrencyCode"})
    r = merchant.create_si(intendedAmount={"value": 1000, "currencyCode": "GBPX"})
    problem(r, 400, "validation_error", {"IntendedAmount.CurrencyCode"})


@pytest.mark.parametrize("listener", ["api", "pci"])
def test_reference_length(merchant: InProcessMerchant, listener: str) -> None:
    client = merchant.api if listener == "api" else merchant.pci
    for bad in ("x" * 61, "", "é" * 61):
        r = client.post("/setup-intents", json={**create_body(listener), "reference": bad})
        body = problem(r, 400, "validation_error", {"Reference"})
        if bad:
            assert bad not in r.text
        assert "Reference" in body["errors"]["Reference"][0]
    r = client.post("/setup-intents", json={**create_body(listener), "reference": "x" * 60})
    assert r.status_code == 200, r.text
    assert r.json()["reference"] == "x" * 60
    r = merchant.api.post("/payment-intents", json={**PI_FIELDS, "reference": "y" * 61})
    problem(r, 400, "validation_error", {"Reference"})


def test_other_length_limits(merchant: InProcessMerchant) -> None:
    problem(merchant.create_si(terms=""), 400, "validation_error", {"Terms"})
    problem(merchant.create_si(terms="t" * 10241), 400, "validation_error", {"Terms"})
    problem(merchant.create_si(description="d" * 4097), 400, "validation_error", {"Description"})
    problem(
        merchant.create_si(customer={"emailAddress": "e" * 255}),
        400,
        "validation_error",
        {"Customer.EmailAddress"},
    )


def test_metadata_limits(merchant: InProcessMerchant) -> None:
    too_many = {f"k{i}": "v" for i in range(51)}
    body = problem(merchant.create_si(metadata=too_many), 400, "validation_error")
    assert all(k.startswith("Metadata") for k in body["errors"]), body
    body = problem(merchant.create_si(metadata={"k" * 41: "v"}), 400, "validation_error")
    assert all(k.startswith("Metadata") for k in body["errors"]), body
    body = problem(merchant.create_si(metadata={"k": "v" * 501}), 400, "validation_error")
    assert all(k.startswith("Metadata") for k in body["errors"]), body
    body = problem(merchant.create_si(metadata={"k": {"nested": 1}}), 400, "validation_error")
    assert all(k.startswith("Metadata") for k in body["errors"]), body

    fifty = {f"k{i}": "v" for i in range(50)}
    r = merchant.create_si(metadata=fifty)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == fifty
    r = merchant.create_si(metadata={"n": 5, "s": "x"})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"n": "5", "s": "x"}


def test_unknown_fields_are_ignored(merchant: InProcessMerchant) -> None:
    r = merchant.create_si(somethingElse={"deep": [1, 2]}, unknown=7, nonsense=None)
    assert r.status_code == 200, r.text
    si = r.json()
    for key in ("somethingElse", "unknown", "nonsense"):
        assert key not in si
    r = merchant.api.post("/payment-intents", json={**PI_FIELDS, "wat": True})
    assert r.status_code == 200, r.text
    assert "wat" not in r.json()


def test_field_names_in_other_casing_are_accepted(merchant: InProcessMerchant) -> None:
    r = merchant.api.post(
        "/setup-intents",
        json={
            "Reference": "Cased ref",
            "MERCHANTINITIATEDTRANSACTIONTYPE": "Unscheduled",
            "TeRmS": "Some terms",
            "IntendedAmount": {"Value": 1234, "CURRENCYCODE": "GBP"},
        },
    )
    assert r.status_code == 200, r.text
    si = r.json()
    assert si["reference"] == "Cased ref"
    assert si["merchantInitiatedTransactionType"] == "Unscheduled"
    assert si["terms"] == "Some terms"
    assert si["intendedAmount"] == {"value": 1234, "currencyCode": "GBP"}
    r = merchant.pci.post(
        "/setup-intents",
        json={
            **SI_FIELDS,
            "CardDetails": {
                "CardNumber": APPROVED_CARD,
                "ExpiryDate": "12/39",
                "cV2": "020",
                "CARDNAME": "Test Cardholder",
            },
            "MitConsentGiven": True,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Authorized"


def test_enum_values_are_case_insensitive_and_echoed_canonically(
    merchant: InProcessMerchant,
) -> None:
    for sent, canonical in (("noshow", "NoShow"), ("UNSCHEDULED", "Unscheduled")):
        r = merchant.create_si(merchantInitiatedTransactionType=sent, captureMode="auto")
        assert r.status_code == 200, r.text
        assert r.json()["merchantInitiatedTransactionType"] == canonical
    problem(
        merchant.create_si(merchantInitiatedTransactionType="Sometimes"),
        400,
        "validation_error",
        {"MerchantInitiatedTransactionType"},
    )
    problem(merchant.create_si(captureMode="Manual"), 400, "validation_error", {"CaptureMode"})


def test_null_for_optional_fields_is_accepted(merchant: InProcessMerchant) -> None:
    r = merchant.create_si(
        intendedAmount=None,
        description=None,
        expireAt=None,
        metadata=None,
        customer=None,
        captureMode=None,
        paymentMethods=None,
        config=None,
    )
    assert r.status_code == 200, r.text
    si = r.json()
    assert si["metadata"] == {}
    assert "intendedAmount" not in si
    assert "description" not in si
    r = merchant.api.post(
        "/payment-intents", json={**PI_FIELDS, "setupIntentId": None, "description": None}
    )
    assert r.status_code == 200, r.text
    assert "setupIntentId" not in r.json()
    r = merchant.pci_create(mitConsentGiven=None)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Authorized"


def test_null_for_a_required_field_is_missing(merchant: InProcessMerchant) -> None:
    problem(
        merchant.create_si(reference=None, terms=None),
        400,
        "validation_error",
        {"Reference", "Terms"},
    )


def test_bad_expire_at(merchant: InProcessMerchant) -> None:
    for value in ("tomorrow", "2030-01-01", "2000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", 5):
        problem(merchant.create_si(expireAt=value), 400, "validation_error", {"ExpireAt"})
    for value in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        problem(merchant.create_si(expireAt=value), 400, "validation_error", {"ExpireAt"})


@pytest.mark.parametrize("listener", ["api", "pci"])
def test_body_over_64_kib_is_413(merchant: InProcessMerchant, listener: str) -> None:
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

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: known only by reading
        data = body(10_000)
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    r = client.post("/setup-intents", content=chunks())
    assert "content-length" not in r.request.headers
    problem(r, 413, "payload_too_large")


def test_amount_is_an_alias_of_intended_amount(merchant: InProcessMerchant) -> None:
    fields = {k: v for k, v in SI_FIELDS.items() if k != "intendedAmount"}
    r = merchant.api.post(
        "/setup-intents", json={**fields, "amount": {"value": 2500, "currencyCode": "EUR"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["intendedAmount"] == {"value": 2500, "currencyCode": "EUR"}
    r = merchant.api.post(
        "/setup-intents",
        json={
            **fields,
            "amount": {"value": 2500, "currencyCode": "EUR"},
            "intendedAmount": {"value": 700, "currencyCode": "GBP"},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["intendedAmount"] == {"value": 700, "currencyCode": "GBP"}


def test_odd_but_valid_strings_are_fine(merchant: InProcessMerchant) -> None:
    for ref in ("nul\u0000byte", "emoji \U0001f600", 'quote" and back\\slash', "<script>"):
        r = merchant.create_si(reference=ref)
        assert r.status_code == 200, r.text
        assert r.json()["reference"] == ref
        assert merchant.get_si(r.json()["id"]).json()["reference"] == ref


def test_odd_headers_are_not_errors(merchant: InProcessMerchant) -> None:
    r = merchant.api.post(
        "/setup-intents",
        json=SI_FIELDS,
        headers={"traceparent": "not-a-trace", "Content-Type": "text/plain"},
    )
    assert r.status_code == 200, r.text
    assert TRACE_ID.match(r.headers["traceparent"])
    r = merchant.api.post(
        "/setup-intents", content=json.dumps(SI_FIELDS).encode(), headers={"Content-Type": "x/y"}
    )
    assert r.status_code == 200, r.text


def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(
    world: World, log: io.StringIO
) -> None:
    """The body stops short of its Content-Length and the client goes away. Nobody is left to
    answer, but it is the client's doing: no 500, no unhandled_error with a stack trace in the log.
    (Raw ASGI: ``httpx.ASGITransport`` cannot hang up; a raw socket to a real server does the same.)
    """
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"reference": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = {
        "host": "api.cardkeep.test",
        "authorization": f"Basic {world.key}",
        "version": VERSION,
        "content-type": "application/json",
        "content-length": "100",
    }
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/setup-intents",
        "raw_path": b"/setup-intents",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("api.cardkeep.test", 80),
    }

    async def call() -> None:
        await world.api.app(scope, receive, send)

    asyncio.run(call())
    assert '"path": "/setup-intents"' in log.getvalue()  # the app saw and logged the request
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert all(status < 500 for status in statuses), (statuses, log.getvalue())
    assert '"unhandled_error"' not in log.getvalue(), log.getvalue()


# -- card data on the PCI listener (§4.3) ----------------------------------------------------------


def pci_problem(merchant: InProcessMerchant, keys: set[str], **body: Any) -> dict[str, Any]:
    r = merchant.pci.post("/setup-intents", json={**SI_FIELDS, **body})
    return problem(r, 400, "validation_error", keys)


def test_luhn_invalid_pan_is_400_and_not_echoed(merchant: InProcessMerchant) -> None:
    for number in (LUHN_BAD, "5200 0000 0000 1006", "5200-0000-0000-1006"):
        r = merchant.pci_create(card(number))
        body = problem(r, 400, "validation_error", {"CardDetails.CardNumber"})
        assert LUHN_BAD not in r.text
        assert number not in r.text
        assert "000000" not in body["detail"]
        for messages in body["errors"].values():
            assert all(not re.search(r"\d{6,}", m) for m in messages), body


@pytest.mark.parametrize(
    "number",
    [
        "",
        "abcd",
        "4242",
        "52000000000010050000",
        FULLWIDTH_PAN,
        "5200000000001005x",
        5200000000001005,
    ],
    ids=repr,
)
def test_other_bad_card_numbers(merchant: InProcessMerchant, number: Any) -> None:
    r = merchant.pci_create({**card(), "cardNumber": number})
    problem(r, 400, "validation_error", {"CardDetails.CardNumber"})
    if str(number) not in ("", "abcd", "4242"):
        assert str(number) not in r.text


def test_pan_with_spaces_or_dashes_is_accepted(merchant: InProcessMerchant) -> None:
    for number in ("5200 0000 0000 1005", "5200-0000-0000-1005"):
        r = merchant.pci_create(card(number))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Authorized"
        assert r.json()["paymentDetails"]["card"]["cardNumber"] == "520000******1005"
        assert number not in r.text


@pytest.mark.parametrize(
    "expiry",
    ["13/29", "1229", "00/29", "12-29", "", "ab/cd", "1/29", "12/2", "\u0661\u0662/\u0663\u0669"],
)
def test_bad_expiry_format(merchant: InProcessMerchant, expiry: str) -> None:
    r = merchant.pci_create(card(expiry=expiry))
    problem(r, 400, "validation_error", {"CardDetails.ExpiryDate"})


def test_expiry_too_far_ahead_is_400(merchant: InProcessMerchant) -> None:
    r = merchant.pci_create(card(expiry="12/2099"))
    problem(r, 400, "validation_error", {"CardDetails.ExpiryDate"})


def test_accepted_expiry_formats(merchant: InProcessMerchant) -> None:
    for expiry in ("12 / 39", "12/2039", "01/40"):
        r = merchant.pci_create(card(expiry=expiry))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Authorized"


def test_past_expiry_is_card_expired_not_400(merchant: InProcessMerchant) -> None:
    r = merchant.pci_create(card(expiry="01/20"))
    assert r.status_code == 200, r.text
    si = r.json()
    assert si["status"] == "CardExpired"
    assert si["paymentDetails"]["message"] == "Card expired"
    assert [e["eventType"] for e in si["setupEvents"]] == ["Declined"]
    problem(merchant.create_pi(si["id"]), 400, "setup_intent_not_usable")


@pytest.mark.parametrize(
    "cv2", ["12", "1234", "abc", "", "1 2", "\uff11\uff12\uff13", 123], ids=repr
)
def test_bad_cv2(merchant: InProcessMerchant, cv2: Any) -> None:
    r = merchant.pci_create({**card(), "cv2": cv2})
    problem(r, 400, "validation_error", {"CardDetails.Cv2"})


def test_cv2_alias_and_missing_card_fields(merchant: InProcessMerchant) -> None:
    details = card()
    del details["cv2"]
    r = merchant.pci_create({**details, "cV2": "020"})
    assert r.status_code == 200, r.text
    problem(merchant.pci_create(details), 400, "validation_error", {"CardDetails.Cv2"})
    r = merchant.pci_create({"cardName": "Only A Name"})
    problem(
        r,
        400,
        "validation_error",
        {"CardDetails.CardNumber", "CardDetails.ExpiryDate", "CardDetails.Cv2"},
    )
    problem(
        merchant.pci_create({**card(), "cardName": "n" * 101}),
        400,
        "validation_error",
        {"CardDetails.CardName"},
    )


def test_amex_is_not_accepted_by_default(merchant: InProcessMerchant) -> None:
    r = merchant.pci_create(card(AMEX, cv2="1234"))
    body = problem(r, 400, "validation_error")
    assert "CardDetails.CardNumber" in body["errors"], body
    assert AMEX not in r.text
    assert "AMEX" in json.dumps(body) or "scheme" in json.dumps(body).lower()


def test_mit_consent_false_is_400(merchant: InProcessMerchant) -> None:
    problem(
        merchant.pci_create(mitConsentGiven=False), 400, "validation_error", {"MitConsentGiven"}
    )
    problem(merchant.pci_create(mitConsentGiven="no"), 400, "validation_error", {"MitConsentGiven"})
    r = merchant.pci_create(mitConsentGiven=True)
    assert r.status_code == 200, r.text


def test_missing_or_malformed_card_details(merchant: InProcessMerchant) -> None:
    pci_problem(merchant, {"CardDetails"})
    pci_problem(merchant, {"CardDetails"}, cardDetails=None)
    pci_problem(merchant, {"CardDetails"}, cardDetails=APPROVED_CARD)
    pci_problem(merchant, {"CardDetails"}, cardDetails=[APPROVED_CARD])
    problem(
        merchant.pci.post("/setup-intents", json={"cardDetails": card()}),
        400,
        "validation_error",
        {"Reference", "MerchantInitiatedTransactionType", "Terms"},
    )


def test_every_card_and_intent_error_is_listed_together(merchant: InProcessMerchant) -> None:
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


def test_a_failed_card_create_stores_nothing(world: World, merchant: InProcessMerchant) -> None:
    reference = f"nothing-stored-{secrets.token_hex(6)}"
    r = merchant.pci_create(card(LUHN_BAD), reference=reference)
    problem(r, 400, "validation_error", {"CardDetails.CardNumber"})
    assert reference not in repr(world.storage.tables)
    # Where a stored one would show: the same create with a good card is there.
    merchant.authorized_si(reference=reference)
    assert reference in repr(world.storage.tables)


# -- card data on the API listener (§1) ------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"cardDetails": card()},
        {"CardDetails": card()},
        {"cardNumber": APPROVED_CARD},
        {"CARDNUMBER": APPROVED_CARD},
        {"cv2": "020"},
        {"cV2": "020"},
        {"cvv": "020"},
        {"cardDetails": card(LUHN_BAD)},
    ],
    ids=lambda e: next(iter(e)),
)
def test_card_data_on_the_api_listener_is_refused(
    merchant: InProcessMerchant, log: io.StringIO, extra: dict[str, Any]
) -> None:
    r = merchant.api.post("/setup-intents", json={**SI_FIELDS, **extra})
    problem(r, 400, "card_data_not_accepted")
    r = merchant.api.post("/payment-intents", json={**PI_FIELDS, **extra})
    problem(r, 400, "card_data_not_accepted")
    text = log.getvalue()
    assert '"path": "/payment-intents"' in text  # the log below is the one these requests wrote
    assert APPROVED_CARD not in text
    assert LUHN_BAD not in text


def test_card_data_on_the_api_listener_creates_nothing(merchant: InProcessMerchant) -> None:
    reference = f"no-card-here-{secrets.token_hex(4)}"
    r = merchant.api.post(
        "/setup-intents", json={**SI_FIELDS, "reference": reference, "cardDetails": card()}
    )
    problem(r, 400, "card_data_not_accepted")
    assert reference not in r.text


# -- ids (§2) --------------------------------------------------------------------------------------

ODD_IDS = [
    "nope",
    "si_sandbox_" + "A" * 39,  # 50 chars: the longest id that is looked up
    "x" * 51,
    "x" * 4000,
    "%00",
    "%27%3B--",
    "%E2%98%83",
    "si_sandbox_AAAAAAAAAAAAAAAAAAAAA%20",
]


@pytest.mark.parametrize("the_id", [UNKNOWN_SI, UNKNOWN_PI, *ODD_IDS])
def test_unknown_ids_are_404(merchant: InProcessMerchant, the_id: str) -> None:
    for method, path in (
        ("GET", f"/setup-intents/{the_id}"),
        ("DELETE", f"/setup-intents/{the_id}"),
        ("DELETE", f"/setup-intents/{the_id}?includeAuthorized=true"),
        ("POST", f"/setup-intents/{the_id}/refresh-client-session-secret"),
        ("GET", f"/payment-intents/{the_id}"),
        ("GET", f"/payment-intents/{the_id}?returnCanceled=true"),
        ("DELETE", f"/payment-intents/{the_id}"),
        ("POST", f"/payment-intents/{the_id}/charge"),
    ):
        problem(merchant.api.request(method, path), 404, "not_found")


def test_unknown_setup_intent_id_in_payment_intent_create(merchant: InProcessMerchant) -> None:
    for the_id in (UNKNOWN_SI, "nope", UNKNOWN_PI):
        problem(merchant.create_pi(the_id), 400, "setup_intent_not_usable")


def _same_shape(a: dict[str, Any], a_id: str, b: dict[str, Any], b_id: str) -> None:
    assert (a["status"], a["code"], a["title"]) == (b["status"], b["code"], b["title"])
    assert a.get("detail", "").replace(a_id, "<id>") == b.get("detail", "").replace(b_id, "<id>")


def test_another_accounts_objects_are_invisible(
    merchant: InProcessMerchant, other_merchant: InProcessMerchant
) -> None:
    secret_ref = f"other-account-{secrets.token_hex(4)}"
    theirs = other_merchant.authorized_si(reference=secret_ref)
    their_pi = other_merchant.create_pi(theirs["id"], 1234, reference=secret_ref).json()
    their_created = other_merchant.create_si(reference=secret_ref).json()
    their_bare_pi = other_merchant.api.post(
        "/payment-intents", json={**PI_FIELDS, "reference": secret_ref}
    ).json()

    def check(r: httpx.Response, unknown: httpx.Response, their_id: str, unknown_id: str) -> None:
        body = problem(r, unknown.status_code, unknown.json()["code"])
        _same_shape(body, their_id, unknown.json(), unknown_id)
        assert secret_ref not in r.text
        assert "******1005" not in r.text
        assert "Authorized" not in r.text
        assert other_merchant.key not in r.text

    si_ops = [
        ("GET", "/setup-intents/{}"),
        ("DELETE", "/setup-intents/{}"),
        ("DELETE", "/setup-intents/{}?includeAuthorized=true"),
        ("POST", "/setup-intents/{}/refresh-client-session-secret"),
    ]
    for si_id in (theirs["id"], their_created["id"]):
        for method, path in si_ops:
            unknown = merchant.api.request(method, path.format(UNKNOWN_SI))
            problem(unknown, 404, "not_found")
            check(merchant.api.request(method, path.format(si_id)), unknown, si_id, UNKNOWN_SI)

    pi_ops = [
        ("GET", "/payment-intents/{}"),
        ("GET", "/payment-intents/{}?returnCanceled=true"),
        ("DELETE", "/payment-intents/{}"),
        ("POST", "/payment-intents/{}/charge"),
    ]
    for pi_id in (their_pi["id"], their_bare_pi["id"]):
        for method, path in pi_ops:
            unknown = merchant.api.request(method, path.format(UNKNOWN_PI))
            problem(unknown, 404, "not_found")
            check(merchant.api.request(method, path.format(pi_id)), unknown, pi_id, UNKNOWN_PI)

    # §5.1: a setupIntentId that does not belong to the account -> 400 setup_intent_not_usable,
    # answered exactly as for an id that does not exist (§2): no status, no data of theirs.
    unknown = merchant.create_pi(UNKNOWN_SI)
    problem(unknown, 400, "setup_intent_not_usable")
    check(merchant.create_pi(theirs["id"]), unknown, theirs["id"], UNKNOWN_SI)
    check(merchant.create_pi(their_created["id"]), unknown, their_created["id"], UNKNOWN_SI)

    # Nothing of theirs changed, and their card is still good for exactly their charge.
    assert other_merchant.get_si(theirs["id"]).json()["status"] == "Authorized"
    assert other_merchant.get_si(their_created["id"]).json()["status"] == "Created"
    assert other_merchant.api.get(f"/payment-intents/{their_bare_pi['id']}").json()["status"] == (
        "Created"
    )
    r = other_merchant.charge(their_pi["id"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Successful"


# -- methods and paths (§1, §3) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("GET", "/"),
        ("GET", "/setup-intents/x/y/z"),
        ("POST", "/payment-intents/x/charge/again"),
        ("GET", "/sandbox"),
    ],
)
def test_unknown_path_is_404_not_found(merchant: InProcessMerchant, method: str, path: str) -> None:
    problem(merchant.api.request(method, path), 404, "not_found")


@pytest.mark.parametrize(
    ("listener", "method", "path", "allowed"),
    [
        ("api", "PUT", "/setup-intents", {"POST"}),
        ("api", "GET", "/setup-intents", {"POST"}),
        ("api", "GET", "/payment-intents", {"POST"}),
        ("api", "PATCH", f"/setup-intents/{UNKNOWN_SI}", {"GET", "DELETE"}),
        ("api", "PUT", f"/payment-intents/{UNKNOWN_PI}", {"GET", "DELETE"}),
        ("api", "GET", f"/payment-intents/{UNKNOWN_PI}/charge", {"POST"}),
        ("api", "GET", "/sandbox/clock/advance", {"POST"}),
        ("api", "POST", "/health", {"GET"}),
        ("pci", "GET", "/setup-intents", {"POST"}),
        ("pci", "DELETE", "/setup-intents", {"POST"}),
    ],
)
def test_wrong_method_is_405_with_allow(
    merchant: InProcessMerchant, listener: str, method: str, path: str, allowed: set[str]
) -> None:
    client = merchant.api if listener == "api" else merchant.pci
    r = client.request(method, path)
    problem(r, 405, "method_not_allowed")
    allow = {m.strip().upper() for m in r.headers["allow"].split(",") if m.strip()}
    assert allowed <= allow, f"Allow: {r.headers['allow']}, wanted at least {allowed}"
    assert method not in allow


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/payment-intents/{UNKNOWN_PI}/captures"),
        ("PUT", f"/payment-intents/{UNKNOWN_PI}/tips-amount"),
        ("PUT", f"/payment-intents/{UNKNOWN_PI}/amount"),
        ("GET", f"/payment-intents/{UNKNOWN_PI}/receipt"),
        ("POST", "/payment-intents/search"),
        ("GET", "/customers"),
        ("POST", "/customers"),
        ("GET", "/terminals"),
        ("GET", "/terminals/t_1"),
    ],
)
def test_dojo_endpoints_not_served_are_404_not_implemented(
    merchant: InProcessMerchant, method: str, path: str
) -> None:
    problem(merchant.api.request(method, path), 404, "not_implemented")


def test_refunds_and_webhooks_never_500(merchant: InProcessMerchant) -> None:
    """Served per §5.5/§8.1 once built; until then 404 not_implemented. Either way a problem."""
    r = merchant.api.post(
        f"/payment-intents/{UNKNOWN_PI}/refunds",
        json={"amount": 100},
        headers={"idempotencyKey": secrets.token_hex(8)},
    )
    problem(r, 404, r.json()["code"])
    assert r.json()["code"] in ("not_implemented", "not_found")
    r = merchant.api.get("/webhooks")
    if r.status_code == 404:
        problem(r, 404, "not_implemented")
    else:
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/payment-intents/{UNKNOWN_PI}"),
        ("POST", "/payment-intents"),
        ("POST", f"/payment-intents/{UNKNOWN_PI}/charge"),
        ("GET", f"/setup-intents/{UNKNOWN_SI}"),
        ("DELETE", f"/setup-intents/{UNKNOWN_SI}"),
        ("POST", f"/setup-intents/{UNKNOWN_SI}/refresh-client-session-secret"),
        ("GET", "/sandbox/clock"),
        ("POST", "/sandbox/clock/advance"),
        ("GET", "/webhooks"),
        ("GET", "/internal/charge"),
        ("POST", "/internal/charge"),
        ("GET", "/nope"),
    ],
)
def test_pci_listener_serves_no_api_paths(
    merchant: InProcessMerchant, method: str, path: str
) -> None:
    problem(merchant.pci.request(method, path, json=PI_FIELDS), 404, "not_found")
    r = merchant.pci.request(method, path, headers={"Authorization": "Bearer guess"})
    problem(r, 404, "not_found")


# -- charge and state edge cases -------------------------------------------------------------------


def test_charge_without_setup_intent_is_not_merchant_initiated(merchant: InProcessMerchant) -> None:
    pi = merchant.api.post("/payment-intents", json=PI_FIELDS)
    assert pi.status_code == 200, pi.text
    assert "setupIntentId" not in pi.json()
    body = problem(merchant.charge(pi.json()["id"]), 400, "not_merchant_initiated")
    assert body["detail"]
    assert merchant.api.get(f"/payment-intents/{pi.json()['id']}").json()["status"] == "Created"


def test_delete_authorized_setup_intent_needs_include_authorized(
    merchant: InProcessMerchant,
) -> None:
    si = merchant.authorized_si()
    body = problem(merchant.api.delete(f"/setup-intents/{si['id']}"), 400, "invalid_state")
    assert "Authorized" in body["detail"]
    assert "includeAuthorized" in body["detail"]
    for flag in ("banana", "1", "yes", ""):
        r = merchant.api.delete(f"/setup-intents/{si['id']}", params={"includeAuthorized": flag})
        problem(r, 400, "validation_error")
    r = merchant.api.delete(f"/setup-intents/{si['id']}", params={"includeAuthorized": "false"})
    problem(r, 400, "invalid_state")
    assert merchant.get_si(si["id"]).json()["status"] == "Authorized"
    r = merchant.api.delete(f"/setup-intents/{si['id']}", params={"includeAuthorized": "TRUE"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Closed"


def test_bad_return_canceled_flag(merchant: InProcessMerchant) -> None:
    pi = merchant.api.post("/payment-intents", json=PI_FIELDS).json()
    r = merchant.api.get(f"/payment-intents/{pi['id']}", params={"returnCanceled": "banana"})
    problem(r, 400, "validation_error")


def test_payment_intent_for_unusable_setup_intents(merchant: InProcessMerchant) -> None:
    created = merchant.create_si().json()
    body = problem(merchant.create_pi(created["id"]), 400, "setup_intent_not_usable")
    assert "Created" in body["detail"]
    declined = merchant.pci_create(card("4000000000000002"))
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "Created"
    problem(merchant.create_pi(declined.json()["id"]), 400, "setup_intent_not_usable")


def test_payment_intent_create_rules(merchant: InProcessMerchant) -> None:
    si = merchant.authorized_si()
    problem(merchant.create_pi(si["id"], currency="EUR"), 400, "validation_error")
    problem(
        merchant.create_pi(si["id"], captureMode="Manual"),
        400,
        "validation_error",
        {"CaptureMode"},
    )
    problem(
        merchant.create_pi(si["id"], paymentMethods=["Wallet"]),
        400,
        "validation_error",
        {"PaymentMethods"},
    )
    problem(merchant.create_pi(si["id"], value=0), 400, "validation_error", {"Amount.Value"})
    assert merchant.get_si(si["id"]).json()["status"] == "Authorized"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"seconds": 0},
        {"seconds": -5},
        {"seconds": 315_360_001},
        {"seconds": "abc"},
        {"seconds": 1.5},
        {"seconds": "--1"},
        {"seconds": "9" * 5000},
    ],
    ids=lambda v: repr(v)[:24],
)
def test_bad_clock_advance(merchant: InProcessMerchant, body: dict[str, Any]) -> None:
    r = merchant.api.post("/sandbox/clock/advance", json=body)
    problem(r, 400, "validation_error", {"Seconds"})


# -- fuzz ------------------------------------------------------------------------------------------

FIELD_NAMES = [
    "reference",
    "Reference",
    "merchantInitiatedTransactionType",
    "terms",
    "intendedAmount",
    "amount",
    "value",
    "currencyCode",
    "description",
    "expireAt",
    "captureMode",
    "paymentMethods",
    "customer",
    "billingAddress",
    "shippingDetails",
    "orderDetails",
    "config",
    "metadata",
    "setupIntentId",
    "itemLines",
    "taxLines",
    "mitConsentGiven",
    "cardDetails",
    "expiryDate",
    "cardName",
    "tipsAmount",
]

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(FIELD_NAMES), children, max_size=4)
    ),
    max_leaves=15,
)
field_bodies = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8)
TARGETS = [("api", "/setup-intents"), ("api", "/payment-intents"), ("pci", "/setup-intents")]


# The number of examples is the profile's (tests/conftest.py: more on CI). One world for all the
# examples of a run, as one server was: the function-scoped fixtures are meant to be shared.
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(target=st.sampled_from(TARGETS), body=json_values | field_bodies)
def test_arbitrary_json_bodies_never_cause_a_500(
    merchant: InProcessMerchant, target: tuple[str, str], body: Any
) -> None:
    listener, path = target
    client = merchant.api if listener == "api" else merchant.pci
    r = client.post(path, content=json.dumps(body).encode())
    assert r.status_code < 500, f"{listener} POST {path} {body!r} -> {r.status_code} {r.text}"
    if 400 <= r.status_code < 500:
        assert r.headers["content-type"].startswith("application/problem+json"), r.headers
        assert isinstance(r.json().get("code"), str), r.text
    else:
        assert r.status_code == 200, r.text
