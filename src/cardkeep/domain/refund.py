"""Refunds and reversals of a captured payment intent: each one money movement, exactly once.

Owns the Refund record (a refund or a reversal), its statuses and TRANSITIONS, and the claim
rules beside them (CONTRACT §5.5-5.6): what may be refunded or reversed given the payment intent
and the movements of it still pending. A claim reserves its amount (``Pending``); reserved,
unsettled refunds count as refunded, forbid a reversal, and, once their outcome is unknown (older
than the acquirer call's timeout) or while a reversal is pending, make any other refund or
reversal wait (``refund_in_progress``). Settling moves ``Pending`` to ``Succeeded``, ``Declined``
or ``Failed``; only ``Succeeded`` moved money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from cardkeep.domain.errors import (
    AmountExceedsRefundable,
    IllegalTransition,
    InvalidState,
    NotReversible,
    RefundInProgress,
    ValidationFailed,
)
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.payment_intent import Status as PIStatus


class Kind(StrEnum):
    REFUND = "refund"
    REVERSAL = "reversal"


class Status(StrEnum):
    PENDING = "Pending"  # claimed, the amount reserved; the acquirer's answer not settled yet
    SUCCEEDED = "Succeeded"
    DECLINED = "Declined"  # the acquirer declined: nothing moved, the reservation released
    FAILED = "Failed"  # the acquirer answered an error: nothing moved, the reservation released


class Event(StrEnum):
    SUCCEED = "succeed"
    DECLINE = "decline"
    FAIL = "fail"


S, E = Status, Event

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.PENDING, E.SUCCEED): S.SUCCEEDED,
    (S.PENDING, E.DECLINE): S.DECLINED,
    (S.PENDING, E.FAIL): S.FAILED,
}

MAX_REASON = 1024
MAX_NOTES = 4096
MAX_PREVIOUS_ID = 100


@dataclass(frozen=True, slots=True)
class Refund:
    id: str  # rfnd_… for a refund, rvs_… for a reversal
    account_id: str
    payment_intent_id: str
    kind: Kind
    status: Status
    amount: Money
    created_at: datetime  # the account's clock
    updated_at: datetime
    # Real (not account-clock) time of the claim: its outcome is unknown once the acquirer call's
    # timeout has passed, and recovery waits from this moment.
    claimed_at: datetime
    reason: str | None = None
    notes: str | None = None
    previous_transaction_id: str | None = None
    message: str | None = None  # the acquirer's answer, once settled
    # Which request (a token of its idempotency key) claimed it: a retry finds it again.
    request: str | None = None

    @property
    def acquirer_key(self) -> str:
        """The acquirer idempotency key: one per refund, reused by every re-send of it."""
        return f"{self.kind.value}:{self.id}"


def transition(refund: Refund, event: Event, now: datetime, message: str) -> Refund:
    target = TRANSITIONS.get((refund.status, event))
    if target is None:
        raise IllegalTransition(
            f"The {refund.kind.value} is {refund.status.value}; it cannot {event.value}."
        )
    return replace(refund, status=target, updated_at=now, message=message)


def outcome_unknown(refund: Refund, real_now: datetime, call_timeout: timedelta) -> bool:
    """Pending past the acquirer call's hard timeout: the call that claimed it has given up."""
    return refund.status is S.PENDING and real_now - refund.claimed_at >= call_timeout


@dataclass(frozen=True)
class Pending:
    """The movements of one payment intent that are claimed and not settled."""

    movements: Sequence[Refund]

    @property
    def reserved(self) -> int:
        return sum(m.amount.value for m in self.movements)

    def blocking(self, real_now: datetime, call_timeout: timedelta) -> Refund | None:
        """A pending reversal, or a refund whose outcome is unknown: nothing else may start."""
        for m in self.movements:
            if m.kind is Kind.REVERSAL or outcome_unknown(m, real_now, call_timeout):
                return m
        return None


def refundable(pi: PaymentIntent, pending: Pending) -> int:
    """What may still be refunded: captured, minus refunded, minus reserved."""
    return pi.captured_amount - pi.refunded_amount - pending.reserved


def check_refund(
    pi: PaymentIntent,
    amount: int,
    pending: Pending,
    real_now: datetime,
    call_timeout: timedelta,
    wait: int,
) -> None:
    """A refund of ``amount`` may be claimed now, or the refusal (CONTRACT §5.5)."""
    if amount < 1:
        raise ValidationFailed.one("Amount", "The Amount field must be at least 1.")
    if pi.status is not PIStatus.CAPTURED:
        raise InvalidState(
            f"The payment intent is {pi.public_status.value}; only a Captured payment intent "
            "can be refunded."
        )
    if pending.blocking(real_now, call_timeout) is not None:
        raise RefundInProgress(
            "A refund or reversal of this payment intent is in progress; retry.", wait
        )
    left = refundable(pi, pending)
    if amount > left:
        raise AmountExceedsRefundable(
            f"The amount {amount} exceeds what can still be refunded ({left}): captured "
            f"{pi.captured_amount}, refunded {pi.refunded_amount}, reserved {pending.reserved}."
        )


def check_reversal(
    pi: PaymentIntent, pending: Pending, real_now: datetime, call_timeout: timedelta, wait: int
) -> None:
    """A reversal may be claimed now (Captured, nothing refunded or reserved), or the refusal
    (CONTRACT §5.6: 409 ``invalid_state``; ``refund_in_progress`` while an outcome is unknown)."""
    if pending.blocking(real_now, call_timeout) is not None:
        raise RefundInProgress(
            "A refund or reversal of this payment intent is in progress; retry.", wait
        )
    if pi.status is not PIStatus.CAPTURED or pi.refunded_amount or pending.reserved:
        status = pi.public_status.value
        refunded = pi.refunded_amount + pending.reserved
        why = f"{refunded} is refunded or being refunded" if refunded else f"it is {status}"
        raise NotReversible(
            f"The payment intent cannot be reversed: {why}. Only a Captured payment intent "
            "with nothing refunded can be reversed."
        )
