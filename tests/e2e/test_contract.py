"""Contract: every 2xx body validates against the matching component schema of Dojo's spec
(2025-09-10), and every error body against ProblemDetails (CONTRACT §2, §3).

Drives the real server over HTTP. Each body goes through ``tests/contract/schemas.py``, which keeps
``additionalProperties: false`` wherever the spec says it, so an unexpected key fails too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.contract.schemas import errors_of
from tests.e2e.harness import DECLINED_CARD, SI_FIELDS, VERSION, Merchant, Server, card

TRACE_ID = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
UNKNOWN_SI = "si_sandbox_AAAAAAAAAAAAAAAAAAAAAA"
UNKNOWN_PI = "pi_sandbox_AAAAAAAAAAAAAAAAAAAAAA"
DAY = 86_400


def assert_valid(component: str, response: httpx.Response, status: int = 200) -> Any:
    """The response has ``status``, the right media type, and a body valid against ``component``.

    Error responses (>= 400) are also checked for ``code``, ``status`` and ``traceId``.
    """
    request = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{request} → {response.status_code}: {response.text}"
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    body = response.json()
    if status >= 400:
        assert media_type == "application/problem+json", f"{request}: {media_type}"
        assert isinstance(body.get("code"), str), f"{request}: no code in {body}"
        assert body.get("status") == status, f"{request}: status {body.get('status')} in body"
        assert TRACE_ID.match(str(body.get("traceId"))), f"{request}: traceId {body.get('traceId')}"
        assert body["traceId"] == response.headers.get("traceparent")
    else:
        assert media_type == "application/json", f"{request}: {media_type}"
    errors = errors_of(component, body)
    assert not errors, (
        f"{request} → {response.status_code}: body is not a valid {component}:\n"
        + "\n".join(errors)
        + f"\nbody: {json.dumps(body, indent=2)}"
    )
    return body


def assert_problem(response: httpx.Response, status: int, code: str) -> Any:
    body = assert_valid("ProblemDetails", response, status)
    assert body["code"] == code, body
    return body


def later(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def without_header(client: httpx.Client, header: str, method: str, url: str) -> httpx.Response:
    request = client.build_request(method, url)
    del request.headers[header]
    return client.send(request)


def public(secret: str) -> dict[str, str]:
    return {"Authorization": f"Basic {secret}", "version": VERSION}


ADDRESS = {
    "address1": "The Brunel Building",
    "address2": "2 Canalside Walk",
    "address3": "Floor 3",
    "address4": "Desk 4",
    "city": "London",
    "state": "Greater London",
    "postcode": "W2 1DG",
    "countryCode": "GB",
    "locality": "Paddington",
    "county": "UK",
}
EVERY_OPTIONAL_FIELD: dict[str, Any] = {
    "description": "Booking for 4 on Friday",
    "expireAt": None,  # filled per test: must be in the future
    "captureMode": "Auto",
    "paymentMethods": ["Card"],
    "customer": {"id": "cust_1", "emailAddress": "ada@example.com", "phoneNumber": "+448000443550"},
    "billingAddress": ADDRESS,
    "shippingDetails": {"name": "Ada Lovelace", "deliveryNotes": "Ring twice", "address": ADDRESS},
    "config": {
        "title": "Dojo Cafe",
        "redirectUrl": "https://merchant.example/done",
        "cancelUrl": "https://merchant.example/cancel",
        "customerEmail": {"collectionRequired": True},
        "details": {"showTotal": True, "showReference": False},
        "billingAddress": {"collectionRequired": False},
        "shippingDetails": {"collectionRequired": True},
        "payment": {"customAmountAllowed": False, "tipsAllowed": False},
    },
    "metadata": {"table": "4", "covers": 4},  # a number is coerced to a string
    "orderDetails": {
        "availabilityDate": "2030-01-01T18:30:00.000000Z",
        "isUpdate": False,
        "id": "order_1",
        "externalId": "epos-77",
    },
}
ECHOED = ("customer", "billingAddress", "shippingDetails", "config", "metadata", "description")


def every_optional_field() -> dict[str, Any]:
    return {**EVERY_OPTIONAL_FIELD, "expireAt": later(7)}


# -- SetupIntentResponse -------------------------------------------------------------------------


def test_api_create_is_created_with_a_client_session_secret(merchant: Merchant) -> None:
    si = assert_valid("SetupIntentResponse", merchant.create_si())
    assert si["status"] == "Created"
    assert si["clientSessionSecret"]
    assert si["clientSessionSecretExpirationDate"]
    assert si["setupEvents"] == []


@pytest.mark.parametrize(
    ("card_details", "status", "event"),
    [
        pytest.param(card(), "Authorized", "Authorized", id="approved"),
        pytest.param(card(DECLINED_CARD), "Created", "Declined", id="declined"),
        pytest.param(card(expiry="01/20"), "CardExpired", "Declined", id="card_expired"),
    ],
)
def test_pci_create(
    merchant: Merchant, card_details: dict[str, str], status: str, event: str
) -> None:
    si = assert_valid("SetupIntentResponse", merchant.pci_create(card_details))
    assert si["status"] == status
    assert [e["eventType"] for e in si["setupEvents"]] == [event]
    assert si["paymentDetails"]["card"]["cardNumber"].count("*") == 6


@pytest.mark.parametrize("listener", ["api", "pci"])
def test_create_with_every_optional_field(merchant: Merchant, listener: str) -> None:
    fields = every_optional_field()
    response = merchant.create_si(**fields) if listener == "api" else merchant.pci_create(**fields)
    si = assert_valid("SetupIntentResponse", response)
    for key in ECHOED:
        assert key in si, f"{key} was not echoed"
    assert si["metadata"] == {"table": "4", "covers": "4"}
    assert (si["config"], si["billingAddress"]) == (fields["config"], ADDRESS)
    assert assert_valid("SetupIntentResponse", merchant.get_si(si["id"])) == {
        k: v
        for k, v in si.items()
        if k not in ("clientSessionSecret", "clientSessionSecretExpirationDate")
    }
    answer = merchant.api.get(f"/setup-intents/public/{si['id']}", headers=public(merchant.key))
    assert_valid("SetupIntentPublicResponse", answer)


def _created(m: Merchant) -> str:
    return str(assert_valid("SetupIntentResponse", m.create_si())["id"])


def _authorized(m: Merchant) -> str:
    si = assert_valid("SetupIntentResponse", m.pci_create())
    assert si["status"] == "Authorized"
    return str(si["id"])


def _completed(m: Merchant) -> str:
    si_id = _authorized(m)
    pi = assert_valid("PaymentIntent", m.create_pi(si_id))
    assert assert_valid("ChargeResponse", m.charge(pi["id"]))["status"] == "Successful"
    return si_id


def _canceled(m: Merchant) -> str:
    si_id = _created(m)
    si = assert_valid("SetupIntentResponse", m.api.delete(f"/setup-intents/{si_id}"))
    assert si["status"] == "Canceled"
    return si_id


def _closed(m: Merchant) -> str:
    si_id = _authorized(m)
    response = m.api.delete(f"/setup-intents/{si_id}", params={"includeAuthorized": "true"})
    assert assert_valid("SetupIntentResponse", response)["status"] == "Closed"
    return si_id


def _expired(m: Merchant) -> str:
    si_id = _created(m)
    assert m.advance(31 * DAY).status_code == 200
    return si_id


def _card_expired(m: Merchant) -> str:
    return str(assert_valid("SetupIntentResponse", m.pci_create(card(expiry="01/20")))["id"])


SI_IN_STATE: dict[str, Callable[[Merchant], str]] = {
    "Created": _created,
    "Authorized": _authorized,
    "Completed": _completed,
    "Canceled": _canceled,
    "Closed": _closed,
    "Expired": _expired,
    "CardExpired": _card_expired,
}


@pytest.mark.parametrize("status", list(SI_IN_STATE))
def test_get_setup_intent_in_every_state(merchant: Merchant, status: str) -> None:
    si_id = SI_IN_STATE[status](merchant)
    si = assert_valid("SetupIntentResponse", merchant.get_si(si_id))
    assert si["status"] == status
    assert "clientSessionSecret" not in si
    response = merchant.api.get(f"/setup-intents/public/{si_id}", headers=public(merchant.key))
    assert assert_valid("SetupIntentPublicResponse", response)["status"] == status


def test_refresh_client_session_secret(merchant: Merchant) -> None:
    first = assert_valid("SetupIntentResponse", merchant.create_si())
    response = merchant.api.post(f"/setup-intents/{first['id']}/refresh-client-session-secret")
    refreshed = assert_valid("SetupIntentResponse", response)
    assert refreshed["clientSessionSecret"] != first["clientSessionSecret"]


# -- SetupIntentPublicResponse -------------------------------------------------------------------


def test_public_read_and_refresh_with_the_client_session_secret(merchant: Merchant) -> None:
    si = assert_valid("SetupIntentResponse", merchant.create_si(**every_optional_field()))
    secret = si["clientSessionSecret"]
    path = f"/setup-intents/public/{si['id']}"

    read = assert_valid("SetupIntentPublicResponse", merchant.api.get(path, headers=public(secret)))
    assert read["status"] == "Created"
    assert "setupEvents" not in read

    response = merchant.api.post(f"{path}/refresh-client-session-secret", headers=public(secret))
    refreshed = assert_valid("SetupIntentPublicResponse", response)
    assert refreshed["clientSessionSecret"] != secret
    again = merchant.api.get(path, headers=public(refreshed["clientSessionSecret"]))
    assert_valid("SetupIntentPublicResponse", again)


# -- PaymentIntent and ChargeResponse ------------------------------------------------------------


def test_payment_intent_create_read_cancel(merchant: Merchant) -> None:
    pi = assert_valid("PaymentIntent", merchant.create_pi(_authorized(merchant)))
    assert pi["status"] == "Created"
    path = f"/payment-intents/{pi['id']}"
    assert assert_valid("PaymentIntent", merchant.api.get(path)) == pi
    assert assert_valid("PaymentIntent", merchant.api.delete(path))["status"] == "Canceled"
    canceled = merchant.api.get(path, params={"returnCanceled": "true"})
    assert assert_valid("PaymentIntent", canceled)["status"] == "Canceled"


def test_payment_intent_without_setup_intent(merchant: Merchant) -> None:
    pi = assert_valid("PaymentIntent", merchant.create_pi(None))
    assert "setupIntentId" not in pi


@pytest.mark.parametrize(
    ("value", "status", "message", "pi_status", "event"),
    [
        pytest.param(1000, "Successful", "DEPOSITED", "Captured", "Captured", id="successful"),
        pytest.param(1051, "Declined", "Insufficient funds", "Created", "Declined", id="declined"),
        pytest.param(1098, "Failed", "Acquirer unavailable", "Created", None, id="failed"),
    ],
)
def test_charge(
    merchant: Merchant,
    value: int,
    status: str,
    message: str,
    pi_status: str,
    event: str | None,
) -> None:
    pi = assert_valid("PaymentIntent", merchant.create_pi(_authorized(merchant), value))
    charge = assert_valid("ChargeResponse", merchant.charge(pi["id"]))
    assert (charge["paymentIntentId"], charge["status"]) == (pi["id"], status)
    assert charge["message"] == message
    after = assert_valid("PaymentIntent", merchant.api.get(f"/payment-intents/{pi['id']}"))
    assert after["status"] == pi_status
    if event is not None:
        assert [e["eventType"] for e in after["paymentEvents"]] == [event]
    if status == "Successful":
        assert after["paymentDetails"]["card"]["cardNumber"] == "520000******1005"


@pytest.mark.parametrize(
    "customer",
    [
        pytest.param(EVERY_OPTIONAL_FIELD["customer"], id="customer"),
        # PaymentCustomerDetails (the request schema) adds secret/savedCardId; the response's
        # `customer` is a Customer, which has neither.
        pytest.param(
            {**EVERY_OPTIONAL_FIELD["customer"], "secret": "cs_1", "savedCardId": "card_1"},
            id="payment_customer_details",
        ),
    ],
)
def test_payment_intent_with_lines_and_every_optional_field(
    merchant: Merchant, customer: dict[str, str]
) -> None:
    gbp = {"currencyCode": "GBP"}
    fields = {
        **every_optional_field(),
        "customer": customer,
        "cardHolderNotPresent": True,
        "requestSecurity": {"userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1", "device": "pc"},
        "itemLines": [
            {
                "id": "line_1",
                "quantity": 2,
                "name": "Burger",
                "category": "Mains",
                "amountTotal": {"value": 1000, **gbp},
                "plu": "PLU-1",
            }
        ],
        "taxLines": [
            {
                "id": "vat",
                "caption": "VAT",
                "subCaption": "20%",
                "amountTotal": {"value": 200, **gbp},
                "affectedPlu": "PLU-1",
            }
        ],
    }
    pi = assert_valid("PaymentIntent", merchant.create_pi(_authorized(merchant), **fields))
    for key in (*ECHOED, "itemLines", "taxLines", "requestSecurity", "orderDetails"):
        assert pi.get(key), f"{key} was not echoed"
    assert pi["cardHolderNotPresent"] is True
    assert_valid("PaymentIntent", merchant.api.get(f"/payment-intents/{pi['id']}"))


def test_echoed_order_timestamp_is_a_contract_timestamp(merchant: Merchant) -> None:
    """CONTRACT §2: every timestamp goes out as UTC with Z and microseconds, whatever offset the
    client used; a date-time that is not RFC 3339 (the spec's format) is refused."""
    order = {"availabilityDate": "2030-01-01T19:30:00+01:00", "id": "order_1"}
    pi = assert_valid("PaymentIntent", merchant.create_pi(None, orderDetails=order))
    assert pi["orderDetails"]["availabilityDate"] == "2030-01-01T18:30:00.000000Z"
    basic = {"availabilityDate": "20300101T193000+0100", "id": "order_1"}
    refused = assert_valid("ProblemDetails", merchant.create_pi(None, orderDetails=basic), 400)
    assert "OrderDetails.AvailabilityDate" in refused["errors"]


# -- ProblemDetails ------------------------------------------------------------------------------


def _created_pi_without_si(m: Merchant) -> str:
    return str(assert_valid("PaymentIntent", m.create_pi(None))["id"])


def _canceled_pi(m: Merchant) -> str:
    pi_id = _created_pi_without_si(m)
    assert_valid("PaymentIntent", m.api.delete(f"/payment-intents/{pi_id}"))
    return pi_id


def _captured_pi(m: Merchant) -> str:
    pi = assert_valid("PaymentIntent", m.create_pi(_authorized(m)))
    assert_valid("ChargeResponse", m.charge(pi["id"]))
    return str(pi["id"])


Call = Callable[[Merchant], httpx.Response]
ERRORS: list[Any] = [
    # 400
    pytest.param(
        400,
        "validation_error",
        lambda m: m.api.post("/setup-intents", json={}),
        id="validation_error-missing_fields",
    ),
    pytest.param(
        400,
        "validation_error",
        lambda m: m.api.post("/setup-intents", content=b'{"reference": '),
        id="validation_error-malformed_json",
    ),
    pytest.param(
        400,
        "validation_error",
        lambda m: m.pci_create(card("5200000000001006")),
        id="validation_error-pci_luhn",
    ),
    pytest.param(
        400,
        "validation_error",
        lambda m: m.api.delete(f"/setup-intents/{_created(m)}", params={"includeAuthorized": "y"}),
        id="validation_error-query_flag",
    ),
    pytest.param(
        400,
        "invalid_version",
        lambda m: without_header(m.api, "version", "GET", f"/setup-intents/{UNKNOWN_SI}"),
        id="invalid_version-missing",
    ),
    pytest.param(
        400,
        "invalid_version",
        lambda m: m.api.get(f"/setup-intents/{UNKNOWN_SI}", headers={"version": "2021-01-01"}),
        id="invalid_version-too_old",
    ),
    pytest.param(
        400,
        "card_data_not_accepted",
        lambda m: m.api.post("/setup-intents", json={**SI_FIELDS, "cardDetails": card()}),
        id="card_data_not_accepted",
    ),
    pytest.param(
        400,
        "invalid_state",
        lambda m: m.api.delete(f"/setup-intents/{_authorized(m)}"),
        id="invalid_state-delete_authorized",
    ),
    pytest.param(
        400,
        "invalid_state",
        lambda m: m.api.post(f"/setup-intents/{_authorized(m)}/refresh-client-session-secret"),
        id="invalid_state-refresh_authorized",
    ),
    pytest.param(
        400,
        "invalid_state",
        lambda m: m.charge(_captured_pi(m)),
        id="invalid_state-charge_captured",
    ),
    pytest.param(
        400,
        "setup_intent_not_usable",
        lambda m: m.create_pi(_created(m)),
        id="setup_intent_not_usable",
    ),
    pytest.param(
        400,
        "not_merchant_initiated",
        lambda m: m.charge(_created_pi_without_si(m)),
        id="not_merchant_initiated",
    ),
    # 401
    pytest.param(
        401,
        "unauthorized",
        lambda m: m.api.get(
            f"/setup-intents/{UNKNOWN_SI}", headers={"Authorization": "Basic sk_sandbox_nope"}
        ),
        id="unauthorized-bad_key",
    ),
    pytest.param(
        401,
        "unauthorized",
        lambda m: without_header(m.api, "Authorization", "GET", f"/setup-intents/{UNKNOWN_SI}"),
        id="unauthorized-no_key",
    ),
    pytest.param(
        401,
        "client_session_secret_invalid",
        lambda m: m.api.get(
            f"/setup-intents/public/{_created(m)}", headers=public("not-the-secret")
        ),
        id="client_session_secret_invalid",
    ),
    # 404
    pytest.param(404, "not_found", lambda m: m.get_si(UNKNOWN_SI), id="not_found-setup_intent"),
    pytest.param(
        404,
        "not_found",
        lambda m: m.api.get(f"/payment-intents/{UNKNOWN_PI}"),
        id="not_found-payment_intent",
    ),
    pytest.param(404, "not_found", lambda m: m.get_si("si_" + "x" * 60), id="not_found-long_id"),
    pytest.param(
        404,
        "not_found",
        lambda m: m.api.get(f"/payment-intents/{_canceled_pi(m)}"),
        id="not_found-canceled_payment_intent",
    ),
    pytest.param(404, "not_found", lambda m: m.api.get("/no-such-path"), id="not_found-path"),
    pytest.param(
        404,
        "not_found",
        lambda m: m.pci.get(f"/payment-intents/{UNKNOWN_PI}"),
        id="not_found-api_path_on_pci",
    ),
    pytest.param(
        404,
        "not_implemented",
        lambda m: m.api.post(f"/payment-intents/{UNKNOWN_PI}/captures", json={"amount": 100}),
        id="not_implemented-captures",
    ),
    pytest.param(
        404,
        "not_found",
        lambda m: m.pci.get("/setup/assets/page-0000000000000000.js"),
        id="not_found-hosted_page_asset",
    ),
    # 405, 413
    pytest.param(
        405,
        "method_not_allowed",
        lambda m: m.api.put("/setup-intents", json=SI_FIELDS),
        id="method_not_allowed",
    ),
    pytest.param(
        413,
        "payload_too_large",
        lambda m: m.api.post("/setup-intents", json={**SI_FIELDS, "description": "x" * 70 * 1024}),
        id="payload_too_large",
    ),
]


@pytest.mark.parametrize(("status", "code", "call"), ERRORS)
def test_error_bodies_are_problem_details(
    merchant: Merchant, status: int, code: str, call: Call
) -> None:
    response = call(merchant)
    body = assert_problem(response, status, code)
    if code == "validation_error":
        assert body["errors"], body
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="cardkeep"'
    if status == 405:
        assert "POST" in response.headers["Allow"]


def test_another_accounts_objects_are_not_found(
    merchant: Merchant, other_merchant: Merchant
) -> None:
    si_id = _authorized(other_merchant)
    pi_id = str(assert_valid("PaymentIntent", other_merchant.create_pi(si_id))["id"])
    for response, status, code in (
        (merchant.get_si(si_id), 404, "not_found"),
        (merchant.api.delete(f"/setup-intents/{si_id}"), 404, "not_found"),
        (merchant.api.get(f"/payment-intents/{pi_id}"), 404, "not_found"),
        (merchant.charge(pi_id), 404, "not_found"),
        # §5.1: a setup intent of another account is "not usable" for a new payment intent
        (merchant.create_pi(si_id), 400, "setup_intent_not_usable"),
    ):
        assert_problem(response, status, code)


def test_sandbox_only_with_a_prod_key(server: Server) -> None:
    prod = Merchant(server, server.create_account("prod", mode="prod"))
    try:
        assert_problem(prod.api.get("/sandbox/clock"), 403, "sandbox_only")
        assert_problem(prod.advance(60), 403, "sandbox_only")
    finally:
        prod.close()


def test_webhook_bodies_validate_with_the_two_documented_exemptions(
    merchant: Merchant,
) -> None:
    """Subscriptions, secrets and the event list validate against the spec's components. Two
    exemptions are recorded (CONTRACT §8.1): errors on these endpoints are ProblemDetails, not
    the spec's narrower ErrorResponse; and a sandbox subscription may use ``http://``, which
    ``Subscription.url``'s pattern ``^https://`` does not allow."""
    events = merchant.api.get("/webhooks/events")
    assert events.status_code == 200, events.text
    for group in events.json():
        assert not errors_of("WebhookEvents", group), group
    https = merchant.api.post(
        "/webhooks",
        json={"events": ["payment_intent.created"], "url": "https://127.0.0.1:9/hook"},
    )
    sub = assert_valid("Subscription", https)
    secrets = assert_valid("SecretsResponse", merchant.api.post(f"/webhooks/{sub['id']}/secrets"))
    assert len(secrets["secrets"]) == 2
    for listed in merchant.api.get("/webhooks").json():
        assert not errors_of("Subscription", listed), listed
    http = merchant.api.post(
        "/webhooks",
        json={"events": ["payment_intent.created"], "url": "http://localhost:9/hook"},
    )
    assert http.status_code == 200, http.text
    only_the_pattern = errors_of("Subscription", http.json())
    assert len(only_the_pattern) == 1, only_the_pattern
    assert "$.url" in only_the_pattern[0]
    assert "pattern" in only_the_pattern[0]
    refused = merchant.api.post(
        "/webhooks", json={"events": ["payment_intent.created"], "url": "ftp://localhost/x"}
    )
    assert_problem(refused, 400, "url_not_allowed")
    assert errors_of("ErrorResponse", refused.json())  # the exemption: not the spec's shape
