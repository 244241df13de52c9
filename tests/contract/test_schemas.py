"""The contract validator itself: it accepts what the contract allows and provably fails otherwise."""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.contract.schemas import (
    SPEC_PATH,
    converted_components,
    errors_of,
    is_timestamp,
    is_uri,
    validator,
)

# The copy must stay byte-for-byte identical to Dojo's published spec (see README.md).
SPEC_SHA256 = "9906dfb2efa41925eadd3fc17e804ed13c3aacd4c51c07a58f21cbeda03b16d5"

CARD = {
    "cardNumber": "520000******1005",
    "cardName": "Test Cardholder",
    "expiryDate": "12/29",
    "cardType": "MASTERCARD",
    "cardFundingType": "Credit",
    "last4PAN": "1005",
}
EVENT = {
    "transactionId": "0b8f0d3e-6c8e-4a51-9a07-5c6b0e2f4a11",
    "transactionDateTime": "2026-11-24T13:56:55.123456Z",
    "eventType": "Authorized",
    "authCode": "123456",
    "cardNumber": "520000******1005",
    "expiryDate": "12/29",
    "cardType": "MASTERCARD",
    "cardholderName": "Test Cardholder",
}
# CONTRACT §4.2 and §4.3 (approved), merged: a known-good SetupIntentResponse.
SETUP_INTENT: dict[str, Any] = {
    "setupEvents": [EVENT],
    "id": "si_sandbox_c9RbgPcWbkGcUIbsFSzHcA",
    "clientSessionSecret": "n3Jz0a8m1cn3Jz0a8m1cn3Jz0a8m1cn3Jz0a8m1cn3Jz0a8",
    "clientSessionSecretExpirationDate": "2026-11-24T14:26:55Z",
    "status": "Authorized",
    "paymentMethods": ["Card"],
    "customer": {"id": "cust_1", "emailAddress": "ada@example.com", "phoneNumber": "+44800"},
    "createdAt": "2026-11-24T13:56:55.123456Z",
    "updatedAt": "2026-11-24T13:56:55.123456Z",
    "expireAt": "2026-12-24T13:56:55.123456Z",
    "reference": "Dojo Cafe | Booking request for Table 4",
    "merchantConfig": {
        "supportedPaymentMethods": {
            "cardSchemes": ["VISA", "MASTERCARD", "MAESTRO", "DISCOVER", "DCI"],
            "wallets": [],
        }
    },
    "config": {
        "redirectUrl": "https://merchant.example/done",
        "branding": {"logoUrl": "https://cdn.example/logo.png"},
        "tradingName": "Dojo Cafe",
    },
    "metadata": {"table": "4"},
    "paymentDetails": {
        "transactionId": "0b8f0d3e-6c8e-4a51-9a07-5c6b0e2f4a11",
        "transactionDateTime": "2026-11-24T13:56:55.123456Z",
        "message": "AUTHORISED",
        "authCode": "123456",
        "card": CARD,
    },
    "intendedAmount": {"value": 1000, "currencyCode": "GBP"},
    "merchantInitiatedTransactionType": "NoShow",
    "terms": "In case of no-show, the customer authorizes us to charge the booking fee.",
    "paymentSource": "api",
}
PAYMENT_INTENT: dict[str, Any] = {
    "id": "pi_sandbox_G_FeegU8WESxtY_Nct8jqw",
    "captureMode": "Auto",
    "cardHolderNotPresent": False,
    "paymentDetails": SETUP_INTENT["paymentDetails"],
    "status": "Captured",
    "paymentMethods": ["Card"],
    "amount": {"value": 1000, "currencyCode": "GBP"},
    "refundedAmount": 0,
    "createdAt": "2026-11-24T13:56:55.123456Z",
    "updatedAt": "2026-11-24T13:56:55.123456Z",
    "reference": "No-show fee",
    "itemLines": [],
    "taxLines": [],
    "expireAt": "2026-12-24T13:56:55.123456Z",
    "metadata": {},
    "setupIntentId": "si_sandbox_c9RbgPcWbkGcUIbsFSzHcA",
    "captures": [],
    "paymentEvents": [{**EVENT, "eventType": "Captured"}],
    "paymentSource": "api",
}
PROBLEM = {
    "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
    "title": "One or more validation errors occurred.",
    "status": 400,
    "detail": "The Reference field is required.",
    "traceId": "00-a405f077df056a498323ffbcec05923f-aa63e6f4dbbc734a-01",
    "code": "validation_error",
    "errors": {"Reference": ["The Reference field is required."]},
}


def changed(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``document`` with ``value`` at the dotted ``path`` (``...=DELETE`` drops it)."""
    out = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


DELETE = object()


def test_the_spec_copy_is_dojos_published_file() -> None:
    assert hashlib.sha256(SPEC_PATH.read_bytes()).hexdigest() == SPEC_SHA256


def test_every_converted_component_is_a_valid_json_schema() -> None:
    for schema in converted_components().values():
        Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(
    ("component", "document"),
    [
        ("SetupIntentResponse", SETUP_INTENT),
        (
            "SetupIntentPublicResponse",
            {k: v for k, v in SETUP_INTENT.items() if k != "setupEvents"},
        ),
        ("PaymentIntent", PAYMENT_INTENT),
        ("ChargeResponse", {"paymentIntentId": "pi_x", "status": "Declined", "message": "Nope"}),
        ("ProblemDetails", PROBLEM),
        ("ProblemDetails", {"status": 500, "title": "Internal Server Error", "code": "x"}),
    ],
)
def test_known_good_bodies_validate(component: str, document: dict[str, Any]) -> None:
    assert errors_of(component, document) == []


def test_nullable_fields_accept_null() -> None:
    nulls = {"description": None, "customer": None, "paymentDetails": None, "setupEvents": None}
    assert errors_of("SetupIntentResponse", {**SETUP_INTENT, **nulls}) == []


def _timestamp_in_contract_form(value: Any) -> Any:
    """Dojo's examples carry 7-digit fractions and zone-less times; the contract wants 6 and Z."""
    if isinstance(value, dict):
        return {k: _timestamp_in_contract_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_timestamp_in_contract_form(v) for v in value]
    match = isinstance(value, str) and re.fullmatch(
        r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?Z?", value
    )
    if match:
        fraction = match.group(2)
        return match.group(1) + ((fraction + "00000")[:7] if fraction else "") + "Z"
    return value


def _dojo_response_examples() -> list[Any]:
    spec = yaml.safe_load(SPEC_PATH.read_bytes())
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                for media in (response.get("content") or {}).values():
                    name = media.get("schema", {}).get("$ref", "").rpartition("/")[2]
                    if not name:
                        continue
                    examples = {k: v["value"] for k, v in media.get("examples", {}).items()}
                    if "example" in media:
                        examples["example"] = media["example"]
                    for label, example in examples.items():
                        test_id = f"{method.upper()} {path} {status} {label}"
                        found.append(pytest.param(name, example, id=test_id))
    return found


@pytest.mark.parametrize(("component", "example"), _dojo_response_examples())
def test_dojos_own_response_examples_validate(component: str, example: Any) -> None:
    """The spec's examples are what Dojo emits, extensions included (config.branding, paymentEvents,
    secrets[].lastUsedAt …): the validator must take them, once timestamps are in contract form."""
    assert errors_of(component, _timestamp_in_contract_form(example)) == []


@pytest.mark.parametrize(
    ("component", "document", "path", "value", "rule"),
    [
        ("SetupIntentResponse", SETUP_INTENT, "surprise", 1, "additionalProperties"),
        ("SetupIntentResponse", SETUP_INTENT, "paymentEvents", [], "additionalProperties"),
        ("SetupIntentResponse", SETUP_INTENT, "customer.secret", "cs_1", "additionalProperties"),
        (
            "SetupIntentResponse",
            SETUP_INTENT,
            "paymentDetails.card.cv2",
            "020",
            "additionalProperties",
        ),
        ("SetupIntentResponse", SETUP_INTENT, "setupEvents.0.extra", "x", "additionalProperties"),
        ("SetupIntentResponse", SETUP_INTENT, "config.colour", "red", "additionalProperties"),
        ("SetupIntentResponse", SETUP_INTENT, "config.branding.x", "y", "additionalProperties"),
        ("SetupIntentResponse", SETUP_INTENT, "status", "Pending", "enum"),
        ("SetupIntentResponse", SETUP_INTENT, "status", "authorized", "enum"),
        ("SetupIntentResponse", SETUP_INTENT, "status", None, "type"),
        ("SetupIntentResponse", SETUP_INTENT, "setupEvents.0.eventType", "Approved", "enum"),
        ("SetupIntentResponse", SETUP_INTENT, "intendedAmount.currencyCode", DELETE, "required"),
        ("SetupIntentResponse", SETUP_INTENT, "intendedAmount.value", "1000", "type"),
        ("SetupIntentResponse", SETUP_INTENT, "intendedAmount.value", 10.5, "type"),
        ("SetupIntentResponse", SETUP_INTENT, "metadata.covers", 4, "type"),
        ("SetupIntentResponse", SETUP_INTENT, "createdAt", "2026-11-24T13:56:55+00:00", "format"),
        ("SetupIntentResponse", SETUP_INTENT, "createdAt", "2026-11-24T13:56:55.123Z", "format"),
        ("SetupIntentResponse", SETUP_INTENT, "createdAt", "2026-13-24T13:56:55.123456Z", "format"),
        ("SetupIntentResponse", SETUP_INTENT, "config.redirectUrl", "not a url", "format"),
        ("SetupIntentResponse", SETUP_INTENT, "reference", 42, "type"),
        ("PaymentIntent", PAYMENT_INTENT, "setupEvents", [], "additionalProperties"),
        ("PaymentIntent", PAYMENT_INTENT, "paymentEvents.0.eventType", "Charged", "enum"),
        ("PaymentIntent", PAYMENT_INTENT, "paymentSource", 1, "type"),
        ("PaymentIntent", PAYMENT_INTENT, "status", "Completed", "enum"),
        ("PaymentIntent", PAYMENT_INTENT, "amount.currencyCode", DELETE, "required"),
        ("PaymentIntent", PAYMENT_INTENT, "cardHolderNotPresent", None, "type"),
        ("ProblemDetails", PROBLEM, "status", "400", "type"),
        ("ProblemDetails", PROBLEM, "title", 1, "type"),
    ],
)
def test_the_validator_can_fail(
    component: str, document: dict[str, Any], path: str, value: Any, rule: str
) -> None:
    errors = errors_of(component, changed(document, path, value))
    assert errors, f"{component} with {path}={value!r} should not validate"
    assert any(f"[rule: {rule} at" in line for line in errors), errors


def test_errors_name_the_path_and_the_rule() -> None:
    errors = errors_of("SetupIntentResponse", changed(SETUP_INTENT, "customer.secret", "x"))
    assert any(
        line.strip().startswith("$.customer:") and "'secret' was unexpected" in line
        for line in errors
    ), errors


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2026-11-24T13:56:55.123456Z", True),
        ("2026-11-24T14:26:55Z", True),
        ("2026-11-24T13:56:55.1234567Z", False),
        ("2026-11-24T13:56:55.123456+00:00", False),
        ("2026-11-24 13:56:55.123456Z", False),
        ("2026-02-30T13:56:55Z", False),
        ("2026-11-24T25:00:00Z", False),
    ],
)
def test_timestamp_format(value: str, ok: bool) -> None:
    assert is_timestamp(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://merchant.example/done?x=1", True),
        ("urn:isbn:0451450523", True),
        ("https://", False),
        ("/relative/path", False),
        ("https://exa mple.com", False),
        ("", False),
    ],
)
def test_uri_format(value: str, ok: bool) -> None:
    assert is_uri(value) is ok


def test_unknown_component() -> None:
    with pytest.raises(KeyError):
        validator("NoSuchSchema")
