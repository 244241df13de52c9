"""Response shapes: the JSON documents the API returns, and the JSON response itself.

They follow the spec's component schemas: camelCase keys in schema order, null optionals left out,
``metadata``/``setupEvents``/``paymentEvents``/``itemLines``/``taxLines``/``captures``/
``paymentMethods`` always present. Cards appear masked only: the records here never hold a PAN.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from starlette.responses import Response

from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.card import CardOnFile
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.refund import Refund
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.domain.timefmt import iso, iso_seconds
from cardkeep.domain.webhooks import Delivery, Subscription
from cardkeep.service.payment_intents import ChargeAnswer

JSON = "application/json"


def json_body(data: Any) -> bytes:
    """The bytes of a JSON answer (what ``json_response`` sends, and a recovery point keeps)."""
    return msgspec.json.encode(data)


def json_response(data: Any, *, release: str | None = None, status: int = 200) -> Response:
    headers = {"version": release} if release else None
    return Response(
        json_body(data),
        status_code=status,
        headers=headers,
        media_type=JSON,
    )


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
    out["paymentEvents"] = [event_json(a) for a in pi.public_events]
    out["paymentSource"] = "api"
    return out


def charge_json(answer: ChargeAnswer) -> dict[str, Any]:
    return {
        "paymentIntentId": answer.payment_intent_id,
        "status": answer.status,
        "message": answer.message,
    }


def refund_json(refund: Refund) -> dict[str, Any]:
    """Dojo's Refund."""
    return {
        "paymentIntentId": refund.payment_intent_id,
        "refundId": refund.id,
        "refundReason": refund.reason,
        "notes": refund.notes,
    }


def reversal_json(reversal: Refund) -> dict[str, Any]:
    """Dojo's Reversal."""
    return {"message": "Reversed", "reversalId": reversal.id}


def clock_json(now: datetime, offset_seconds: int) -> dict[str, Any]:
    return {"now": iso(now), "offsetSeconds": offset_seconds}


def _secret_list(sub: Subscription) -> list[dict[str, Any]]:
    return [
        {"id": s.id, "value": s.value, "createdAt": iso(s.created_at), "isActive": s.is_active}
        for s in sub.secrets
    ]


def subscription_json(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "accountId": sub.account_id,
        "events": list(sub.events),
        "url": sub.url,
        "description": sub.description,
        "secrets": _secret_list(sub),
        "createdAt": iso(sub.created_at),
        "updatedAt": iso(sub.updated_at),
    }


def secrets_json(sub: Subscription) -> dict[str, Any]:
    return {"id": sub.id, "secrets": _secret_list(sub)}


def _maybe_iso(ts: datetime | None) -> str | None:
    return None if ts is None else iso(ts)


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "subscriptionId": d.subscription_id,
        "eventId": d.event_id,
        "event": d.event,
        "status": d.status.value,
        "attempts": d.attempts,
        "createdAt": iso(d.created_at),
        "lastAttemptAt": _maybe_iso(d.last_attempt_at),
        "nextAttemptAt": _maybe_iso(d.next_attempt_at) if d.status.value == "pending" else None,
        "lastResponseStatus": d.last_response_status,
        "lastError": d.last_error,
    }


def deliveries_json(page: Sequence[Delivery], after: str | None) -> dict[str, Any]:
    return {"data": [delivery_json(d) for d in page], "after": after}
