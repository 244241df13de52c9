"""Request shapes: the field specs of each request body (decoded leniently by ``web.fields``)
and the commands the use cases take.

Field names match case-insensitively, integers accept digit strings, unknown fields are ignored,
and every invalid field is reported at once (CONTRACT §2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cardkeep.domain.errors import ValidationFailed
from cardkeep.domain.money import MAX_VALUE
from cardkeep.domain.refund import MAX_NOTES, MAX_PREVIOUS_ID, MAX_REASON
from cardkeep.domain.timefmt import iso
from cardkeep.service.payment_intents import NewPaymentIntent
from cardkeep.service.refunds import NewRefund
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
from cardkeep.web.responses import money_json


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


REFUND_FIELDS: list[Field] = [
    Int("amount", required=True, minimum=1, maximum=MAX_VALUE),
    Str("refundReason", max_len=MAX_REASON),
    Str("notes", max_len=MAX_NOTES),
    Str("previousTransactionId", max_len=MAX_PREVIOUS_ID),
]


def refund_command(body: Any) -> NewRefund:
    """Dojo's CreateRefundRequest: the amount in the payment intent's minor units."""
    errors: Errors = {}
    data = read_object(body, REFUND_FIELDS, errors)
    if errors:
        raise ValidationFailed(errors)
    return NewRefund(
        amount=data["amount"],
        reason=data.get("refundReason"),
        notes=data.get("notes"),
        previous_transaction_id=data.get("previousTransactionId"),
    )


def advance_seconds(body: Any) -> int:
    errors: Errors = {}
    data = read_object(
        body, [Int("seconds", required=True, minimum=1, maximum=315_360_000)], errors
    )
    if errors:
        raise ValidationFailed(errors)
    return int(data["seconds"])
