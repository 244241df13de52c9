"""The internal hop's wire: what an API worker sends the PCI process to charge or re-send a charge
of a card on file, or to refund, reverse or re-send a refund of a captured charge, and the outcome
it gets back, as JSON.

No card data crosses the hop: a charge names the card by its vault token (which only the PCI
process can open), a refund names the capture by its acquirer key. Decoding is strict (unknown
fields, wrong types and out-of-range values are refused with ``WireError``), because the PCI side
trusts nothing it did not check.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.money import Money
from cardkeep.service.ports import (
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    RefundOutcome,
    RefundRequest,
    RefundResult,
)

CHARGE = "/internal/charge"
CHARGE_STATUS = "/internal/charge/status"
REFUND = "/internal/refund"
REFUND_STATUS = "/internal/refund/status"
MAX_BODY = 8 * 1024
MAX_TIMEOUT = 120.0
REFUND_KINDS = ("refund", "reversal")


class WireError(ValueError):
    """A hop body that is not what this side sends; the message says what is wrong."""


class _Charge(msgspec.Struct, forbid_unknown_fields=True):
    mode: str
    account_id: str
    token: str
    expiry_month: int
    expiry_year: int
    amount: int
    currency: str
    idempotency_key: str
    network_transaction_id: str | None
    timeout: float


class _Refund(msgspec.Struct, forbid_unknown_fields=True):
    mode: str
    account_id: str
    kind: str
    amount: int
    currency: str
    idempotency_key: str
    capture_key: str
    timeout: float


class _Outcome(msgspec.Struct, forbid_unknown_fields=True):
    result: str
    message: str
    auth_code: str | None = None


T = TypeVar("T")


def _decode(body: bytes, shape: type[T]) -> T:
    if len(body) > MAX_BODY:
        raise WireError(f"the body is over {MAX_BODY} bytes")
    try:
        return msgspec.json.decode(body, type=shape)
    except msgspec.DecodeError as exc:
        raise WireError(str(exc)) from exc


def _timeout(value: float) -> float:
    if not 0 <= value <= MAX_TIMEOUT:
        raise WireError(f"timeout must be from 0 to {MAX_TIMEOUT} seconds")
    return value


def encode_charge(request: ChargeRequest) -> bytes:
    return msgspec.json.encode(
        _Charge(
            mode=request.mode.value,
            account_id=request.account_id,
            token=request.token,
            expiry_month=request.expiry.month,
            expiry_year=request.expiry.year,
            amount=request.amount.value,
            currency=request.amount.currency_code,
            idempotency_key=request.idempotency_key,
            network_transaction_id=request.network_transaction_id,
            timeout=request.timeout,
        )
    )


def decode_charge(body: bytes) -> ChargeRequest:
    wire = _decode(body, _Charge)
    try:
        if not 1 <= wire.expiry_month <= 12:
            raise ValueError("expiry_month must be from 1 to 12")
        return ChargeRequest(
            mode=Mode(wire.mode),
            account_id=wire.account_id,
            token=wire.token,
            expiry=Expiry(wire.expiry_month, wire.expiry_year),
            amount=Money(wire.amount, wire.currency),
            idempotency_key=wire.idempotency_key,
            network_transaction_id=wire.network_transaction_id,
            timeout=_timeout(wire.timeout),
        )
    except (ValueError, TypeError) as exc:
        raise WireError(str(exc)) from exc


def encode_refund(request: RefundRequest) -> bytes:
    return msgspec.json.encode(
        _Refund(
            mode=request.mode.value,
            account_id=request.account_id,
            kind=request.kind,
            amount=request.amount.value,
            currency=request.amount.currency_code,
            idempotency_key=request.idempotency_key,
            capture_key=request.capture_key,
            timeout=request.timeout,
        )
    )


def decode_refund(body: bytes) -> RefundRequest:
    wire = _decode(body, _Refund)
    try:
        if wire.kind not in REFUND_KINDS:
            raise ValueError(f"kind must be one of {', '.join(REFUND_KINDS)}")
        return RefundRequest(
            mode=Mode(wire.mode),
            account_id=wire.account_id,
            kind=wire.kind,
            amount=Money(wire.amount, wire.currency),
            idempotency_key=wire.idempotency_key,
            capture_key=wire.capture_key,
            timeout=_timeout(wire.timeout),
        )
    except (ValueError, TypeError) as exc:
        raise WireError(str(exc)) from exc


def encode_charge_outcome(outcome: ChargeOutcome) -> bytes:
    return msgspec.json.encode(_Outcome(outcome.result.value, outcome.message, outcome.auth_code))


def decode_charge_outcome(body: bytes) -> ChargeOutcome:
    wire = _decode(body, _Outcome)
    try:
        return ChargeOutcome(ChargeResult(wire.result), wire.message, wire.auth_code)
    except ValueError as exc:
        raise WireError(str(exc)) from exc


def encode_refund_outcome(outcome: RefundOutcome) -> bytes:
    return msgspec.json.encode(_Outcome(outcome.result.value, outcome.message))


def decode_refund_outcome(body: bytes) -> RefundOutcome:
    wire = _decode(body, _Outcome)
    try:
        return RefundOutcome(RefundResult(wire.result), wire.message)
    except ValueError as exc:
        raise WireError(str(exc)) from exc
