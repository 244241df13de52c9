"""The wire shapes: request field specs (decoded leniently) and response renderers.

Responses follow the spec's component schemas: camelCase keys in schema order, null optionals left
out, ``metadata``/``setupEvents``/``paymentEvents``/``itemLines``/``taxLines``/``captures``/
``paymentMethods`` always present. Cards appear masked only: the records here never hold a PAN.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.card import CardOnFile
from cardkeep.domain.errors import ValidationFailed
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.domain.timefmt import iso, iso_seconds
from cardkeep.service.payment_intents import ChargeAnswer, NewPaymentIntent
from cardkeep.service.setup_intents import NewSetupIntent
from cardkeep.web.fields import (
    MISSING,
    Arr,
    Bool,
    Choice,
    DateTime,
    Errors,
    Field,
    Int,
    MoneyField,
    Obj,
    Str,
    StrMap,
    add,
    read_object,
)


class Url(Str):
    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        value = super().parse(raw, path, errors)
        if value is not MISSING and not value.lower().startswith(("https://", "http://")):
            add(errors, path, f"The {path} field must be an absolute http(s) URL.")
            return MISSING
        return value


class IsoText(DateTime):
    """A date-time inside an echoed object: kept in the contract's UTC text form."""

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        value = super().parse(raw, path, errors)
        return MISSING if value is MISSING else iso(value)


class WireMoney(MoneyField):
    """Money inside echoed objects (item lines): kept in wire form."""

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        money = super().parse(raw, path, errors)
        return MISSING if money is MISSING else money_json(money)


def _customer(name: str, extra: Sequence[Field] = ()) -> Obj:
    return Obj(
        name,
        [
            Str("id", max_len=100),
            Str("emailAddress", max_len=254),
            Str("phoneNumber", max_len=50),
            *extra,
        ],
    )


def _address(name: str) -> Obj:
    return Obj(
        name,
        [
            Str("address1", max_len=100),
            Str("address2", max_len=100),
            Str("address3", max_len=100),
            Str("address4", max_len=100),
            Str("city", max_len=100),
            Str("state", max_len=100),
            Str("postcode", max_len=50),
            Str("countryCode", required=True, min_len=1, max_len=10),
            Str("locality", max_len=100),
            Str("county", max_len=100),
        ],
    )


def _shipping(name: str) -> Obj:
    return Obj(
        name,
        [Str("name", max_len=100), Str("deliveryNotes", max_len=1024), _address("address")],
    )


def _collect(name: str) -> Obj:
    return Obj(name, [Bool("collectionRequired")])


def _config(name: str) -> Obj:
    return Obj(
        name,
        [
            Str("title", max_len=100),
            Url("redirectUrl", max_len=2048),
            Url("cancelUrl", max_len=2048),
            _collect("customerEmail"),
            Obj("details", [Bool("showTotal"), Bool("showReference")]),
            _collect("billingAddress"),
            _collect("shippingDetails"),
            Obj("payment", [Bool("customAmountAllowed"), Bool("tipsAllowed")]),
        ],
    )


def _order_details(name: str) -> Obj:
    return Obj(
        name,
        [
            IsoText("availabilityDate"),
            Bool("isUpdate"),
            Str("id", max_len=100),
            Str("externalId", max_len=100),
        ],
    )


def _metadata() -> StrMap:
    return StrMap("metadata", max_keys=50, key_max=40, value_max=500)


def _item_line(name: str) -> Obj:
    return Obj(
        name,
        [
            Str("id", max_len=60),
            Int("quantity", minimum=0, maximum=2**31 - 1),
            Str("name", max_len=100),
            Str("category", max_len=100),
            WireMoney("amountTotal", required=True),
            Str("plu", max_len=200),
        ],
    )


def _tax_line(name: str) -> Obj:
    return Obj(
        name,
        [
            Str("id", max_len=60),
            Str("caption", max_len=100),
            Str("subCaption", max_len=100),
            WireMoney("amountTotal", required=True),
            Str("affectedPlu", max_len=200),
        ],
    )


SETUP_INTENT_FIELDS: list[Field] = [
    Str("reference", required=True, min_len=1, max_len=60),
    Choice("merchantInitiatedTransactionType", ["NoShow", "Unscheduled"], required=True),
    Str("terms", required=True, min_len=1, max_len=10240),
    MoneyField("intendedAmount"),
    MoneyField("amount"),
    Str("description", max_len=4096),
    DateTime("expireAt"),
    Choice("captureMode", ["Auto", "Manual"]),
    Arr("paymentMethods", lambda n: Choice(n, ["Card", "Wallet", "SavedCard"]), max_items=3),
    _customer("customer"),
    _address("billingAddress"),
    _shipping("shippingDetails"),
    _order_details("orderDetails"),
    _config("config"),
    _metadata(),
]

# Echoed objects kept on a setup intent, in the order the response schema lists them.
SETUP_INTENT_EXTRAS = (
    "customer",
    "billingAddress",
    "shippingDetails",
    "config",
    "metadata",
    "orderDetails",
)

# What a response may echo of a customer (the spec's Customer); request-only extras are dropped.
CUSTOMER_KEYS = frozenset(f.name for f in _customer("customer").fields)

PAYMENT_INTENT_FIELDS: list[Field] = [
    MoneyField("amount", required=True),
    Str("reference", required=True, min_len=1, max_len=60),
    Str("setupIntentId", min_len=1, max_len=100),
    Str("description", max_len=4096),
    DateTime("expireAt"),
    Choice("captureMode", ["Auto", "Manual"]),
    Bool("cardHolderNotPresent"),
    Arr("paymentMethods", lambda n: Choice(n, ["Card", "Wallet", "SavedCard"]), max_items=3),
    _customer("customer", [Str("secret", max_len=200), Str("savedCardId", max_len=100)]),
    _address("billingAddress"),
    _shipping("shippingDetails"),
    Obj(
        "requestSecurity",
        [Str("userAgent", max_len=300), Str("ipAddress", max_len=70), Str("device", max_len=120)],
    ),
    _config("config"),
    Arr("itemLines", _item_line, max_items=200),
    Arr("taxLines", _tax_line, max_items=200),
    _order_details("orderDetails"),
    _metadata(),
    MoneyField("tipsAmount"),
    MoneyField("cashbackAmount"),
    MoneyField("serviceChargeAmount"),
]

PAYMENT_INTENT_EXTRAS = (
    "customer",
    "requestSecurity",
    "billingAddress",
    "shippingDetails",
    "itemLines",
    "taxLines",
    "config",
    "metadata",
    "orderDetails",
)


def _only_auto_and_card(data: dict[str, Any], errors: Errors) -> None:
    if data.get("captureMode", "Auto") != "Auto":
        add(
            errors, "CaptureMode", "Only Auto capture is supported for merchant-initiated payments."
        )
    methods = data.get("paymentMethods", ["Card"])
    if any(m != "Card" for m in methods):
        add(errors, "PaymentMethods", "Only the Card payment method is supported.")


def setup_intent_command(body: Any, errors: Errors | None = None) -> NewSetupIntent:
    """Decode a setup-intent create body; ``errors`` lets the PCI listener add its card errors."""
    errors = {} if errors is None else errors
    data = read_object(body, SETUP_INTENT_FIELDS, errors)
    _only_auto_and_card(data, errors)
    if errors:
        raise ValidationFailed(errors)
    amount = data.get("intendedAmount", data.get("amount"))
    return NewSetupIntent(
        reference=data["reference"],
        terms=data["terms"],
        mit_type=data["merchantInitiatedTransactionType"],
        description=data.get("description"),
        intended_amount=amount,
        expire_at=data.get("expireAt"),
        extras={k: data[k] for k in SETUP_INTENT_EXTRAS if k in data},
    )


def payment_intent_command(body: Any) -> NewPaymentIntent:
    errors: Errors = {}
    data = read_object(body, PAYMENT_INTENT_FIELDS, errors)
    _only_auto_and_card(data, errors)
    for unsupported in ("tipsAmount", "cashbackAmount", "serviceChargeAmount"):
        if unsupported in data:
            add(
                errors,
                unsupported[:1].upper() + unsupported[1:],
                f"{unsupported} is not supported: merchant-initiated charges are for the amount.",
            )
    if errors:
        raise ValidationFailed(errors)
    extras = {k: data[k] for k in PAYMENT_INTENT_EXTRAS if k in data}
    if "customer" in extras:
        # A payment customer's secret and saved card are request-only: validated, never kept.
        extras["customer"] = {k: v for k, v in extras["customer"].items() if k in CUSTOMER_KEYS}
    if "cardHolderNotPresent" in data:
        extras["cardHolderNotPresent"] = data["cardHolderNotPresent"]
    return NewPaymentIntent(
        amount=data["amount"],
        reference=data["reference"],
        setup_intent_id=data.get("setupIntentId"),
        description=data.get("description"),
        expire_at=data.get("expireAt"),
        extras=extras,
    )


def advance_seconds(body: Any) -> int:
    errors: Errors = {}
    data = read_object(
        body, [Int("seconds", required=True, minimum=1, maximum=315_360_000)], errors
    )
    if errors:
        raise ValidationFailed(errors)
    return int(data["seconds"])


# -- rendering -----------------------------------------------------------------------------------


def money_json(money: Money) -> dict[str, Any]:
    return {"value": money.value, "currencyCode": money.currency_code}


def _card_json(card: CardOnFile) -> dict[str, Any]:
    out: dict[str, Any] = {"cardNumber": card.masked_number}
    if card.cardholder_name:
        out["cardName"] = card.cardholder_name
    out["expiryDate"] = card.expiry.display
    out["cardType"] = card.scheme.value
    if card.funding_type:
        out["cardFundingType"] = card.funding_type
    out["last4PAN"] = card.last4
    return out


def payment_details_json(attempt: AuthAttempt) -> dict[str, Any]:
    out: dict[str, Any] = {
        "transactionId": attempt.transaction_id,
        "transactionDateTime": iso(attempt.at),
        "message": attempt.message,
    }
    if attempt.auth_code:
        out["authCode"] = attempt.auth_code
    if attempt.card is not None:
        out["card"] = _card_json(attempt.card)
    return out


def event_json(attempt: AuthAttempt) -> dict[str, Any]:
    """An entry of ``setupEvents``/``paymentEvents`` (PaymentStatusResponse)."""
    out: dict[str, Any] = {
        "transactionId": attempt.transaction_id,
        "transactionDateTime": iso(attempt.at),
        "eventType": attempt.event_type,
    }
    if attempt.auth_code:
        out["authCode"] = attempt.auth_code
    card = attempt.card
    if card is not None:
        out["cardNumber"] = card.masked_number
        out["expiryDate"] = card.expiry.display
        out["cardType"] = card.scheme.value
        if card.cardholder_name:
            out["cardholderName"] = card.cardholder_name
    return out


def _merchant_config(card_schemes: Sequence[str]) -> dict[str, Any]:
    return {"supportedPaymentMethods": {"cardSchemes": list(card_schemes), "wallets": []}}


def setup_intent_json(
    si: SetupIntent,
    card_schemes: Sequence[str],
    *,
    secret: str | None = None,
    public: bool = False,
) -> dict[str, Any]:
    """SetupIntentResponse (or SetupIntentPublicResponse with ``public``)."""
    out: dict[str, Any] = {}
    if not public:
        out["setupEvents"] = [event_json(a) for a in si.setup_events]
    out["id"] = si.id
    if secret is not None and si.secret is not None:
        out["clientSessionSecret"] = secret
        out["clientSessionSecretExpirationDate"] = iso_seconds(si.secret.expires_at)
    out["status"] = si.public_status.value
    out["paymentMethods"] = ["Card"]
    for key in ("customer", "billingAddress", "shippingDetails"):
        if key in si.extras:
            out[key] = si.extras[key]
    out["createdAt"] = iso(si.created_at)
    out["updatedAt"] = iso(si.updated_at)
    out["expireAt"] = iso(si.expire_at)
    out["reference"] = si.reference
    if si.description is not None:
        out["description"] = si.description
    out["merchantConfig"] = _merchant_config(card_schemes)
    if "config" in si.extras:
        out["config"] = si.extras["config"]
    out["metadata"] = si.extras.get("metadata", {})
    if si.payment_details is not None:
        out["paymentDetails"] = payment_details_json(si.payment_details)
    if si.intended_amount is not None:
        out["intendedAmount"] = money_json(si.intended_amount)
    out["merchantInitiatedTransactionType"] = si.mit_type
    out["terms"] = si.terms
    out["paymentSource"] = "api"
    return out


def payment_intent_json(pi: PaymentIntent, card_schemes: Sequence[str]) -> dict[str, Any]:
    extras = pi.extras
    amount = money_json(pi.amount)
    out: dict[str, Any] = {
        "id": pi.id,
        "captureMode": "Auto",
        "cardHolderNotPresent": bool(extras.get("cardHolderNotPresent", False)),
    }
    if pi.payment_details is not None:
        out["paymentDetails"] = payment_details_json(pi.payment_details)
    out["status"] = pi.public_status.value
    out["paymentMethods"] = ["Card"]
    out["amount"] = amount
    out["requestedAmount"] = amount
    out["totalAmount"] = amount
    out["refundedAmount"] = pi.refunded_amount
    for key in ("customer", "requestSecurity", "billingAddress", "shippingDetails"):
        if key in extras:
            out[key] = extras[key]
    out["createdAt"] = iso(pi.created_at)
    out["updatedAt"] = iso(pi.updated_at)
    out["reference"] = pi.reference
    if pi.description is not None:
        out["description"] = pi.description
    out["itemLines"] = extras.get("itemLines", [])
    out["taxLines"] = extras.get("taxLines", [])
    out["merchantConfig"] = _merchant_config(card_schemes)
    if "config" in extras:
        out["config"] = extras["config"]
    out["expireAt"] = iso(pi.expire_at)
    out["metadata"] = extras.get("metadata", {})
    if "orderDetails" in extras:
        out["orderDetails"] = extras["orderDetails"]
    if pi.setup_intent_id is not None:
        out["setupIntentId"] = pi.setup_intent_id
    out["captures"] = []
    out["paymentEvents"] = [event_json(a) for a in pi.payment_events]
    out["paymentSource"] = "api"
    return out


def charge_json(answer: ChargeAnswer) -> dict[str, Any]:
    return {
        "paymentIntentId": answer.payment_intent_id,
        "status": answer.status,
        "message": answer.message,
    }


def clock_json(now: datetime, offset_seconds: int) -> dict[str, Any]:
    return {"now": iso(now), "offsetSeconds": offset_seconds}
