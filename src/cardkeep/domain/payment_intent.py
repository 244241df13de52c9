"""The payment intent: one merchant-initiated charge of a setup intent's card.

Owns the PaymentIntent record, its statuses, the TRANSITIONS table and, beside it, the refusal
rules. "Charged at most once, in full" lives here: the only way to Captured is Charging →
Captured and the only way into Charging is from Created. ``Charging`` is internal: reads show it
as ``Created`` until the acquirer's answer is settled. Each claim counts an attempt: the acquirer
key of a charge is per attempt (a declined attempt may be retried under a new key).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.errors import (
    ChargeInProgress,
    IllegalTransition,
    InvalidState,
    NotMerchantInitiated,
)
from cardkeep.domain.money import Money


class Status(StrEnum):
    CREATED = "Created"
    AUTHORIZED = "Authorized"
    CAPTURED = "Captured"
    REVERSED = "Reversed"
    REFUNDED = "Refunded"
    CANCELED = "Canceled"
    CHARGING = "Charging"


class Event(StrEnum):
    CLAIM = "claim"  # a charge starts; no other charge may start
    CAPTURE = "capture"  # the acquirer approved: the full amount moved
    RELEASE = "release"  # declined or failed: nothing moved, may be retried
    CANCEL = "cancel"
    EXPIRE = "expire"  # account clock passed expireAt while unpaid
    REFUND = "refund"  # a refund settled and something captured is still not refunded
    REFUND_IN_FULL = "refund_in_full"  # a refund settled and everything captured is refunded
    REVERSE = "reverse"  # a reversal settled: the capture is undone


S, E = Status, Event

# Refunds and reversal (domain.refund) fire the Captured rows when they settle.
TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.CREATED, E.CLAIM): S.CHARGING,
    (S.CHARGING, E.CAPTURE): S.CAPTURED,
    (S.CHARGING, E.RELEASE): S.CREATED,
    (S.CREATED, E.CANCEL): S.CANCELED,
    (S.CREATED, E.EXPIRE): S.CANCELED,
    (S.CAPTURED, E.REFUND): S.CAPTURED,
    (S.CAPTURED, E.REFUND_IN_FULL): S.REFUNDED,
    (S.CAPTURED, E.REVERSE): S.REVERSED,
}


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    account_id: str
    status: Status
    created_at: datetime
    updated_at: datetime
    expire_at: datetime
    amount: Money
    reference: str
    setup_intent_id: str | None = None
    description: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    payment_events: tuple[AuthAttempt, ...] = ()
    payment_details: AuthAttempt | None = None
    captured_amount: int = 0
    refunded_amount: int = 0
    # Real (not account-clock) time of the current claim: recovery waits from this moment.
    claimed_at: datetime | None = None
    # How many charges were claimed: the current (or last) attempt's number.
    charge_attempts: int = 0
    # While a charge is claimed: the ``Unknown`` entry reads show until it is settled.
    pending_attempt: AuthAttempt | None = None
    # Which request (a token of its Idempotency-Key) claimed the current or last attempt.
    attempt_request: str | None = None
    # When retention scrubbed its card and customer details (``domain.retention``), if it has.
    purged_at: datetime | None = None

    @property
    def public_status(self) -> Status:
        return S.CREATED if self.status is S.CHARGING else self.status

    @property
    def public_events(self) -> tuple[AuthAttempt, ...]:
        """``paymentEvents`` as reads show them: with an ``Unknown`` entry while a charge is in
        flight (CONTRACT §5.4)."""
        if self.status is S.CHARGING and self.pending_attempt is not None:
            return (*self.payment_events, self.pending_attempt)
        return self.payment_events

    @property
    def charge_key(self) -> str:
        """The acquirer idempotency key of the current attempt: a re-send of it reuses the key,
        a new attempt after a decline gets a new one."""
        return f"charge:{self.id}:{self.charge_attempts}"


def transition(pi: PaymentIntent, event: Event, now: datetime, **changes: Any) -> PaymentIntent:
    """Apply ``event``, or raise IllegalTransition (changing nothing) if the table forbids it."""
    target = TRANSITIONS.get((pi.status, event))
    if target is None:
        raise IllegalTransition(
            f"The payment intent is {pi.public_status.value}; "
            f"it cannot {event.value.replace('_', ' ')}."
        )
    if event is E.CLAIM:
        changes["charge_attempts"] = pi.charge_attempts + 1
    elif pi.status is S.CHARGING:
        changes["pending_attempt"] = None  # settled: the Unknown entry gives way to the outcome
    if target is S.CAPTURED:
        changes.setdefault("captured_amount", pi.amount.value)
    return replace(pi, status=target, updated_at=now, **changes)


def noted(pi: PaymentIntent, attempt: AuthAttempt, now: datetime) -> PaymentIntent:
    """A ``paymentEvents`` entry that changes no status (a charge refused before it was sent)."""
    return replace(pi, updated_at=now, payment_events=(*pi.payment_events, attempt))


def due_event(pi: PaymentIntent, now: datetime) -> Event | None:
    if pi.status is S.CREATED and now >= pi.expire_at:
        return E.EXPIRE
    return None


# -- refusal rules -----------------------------------------------------------------------------


def cancellation(pi: PaymentIntent, *, wait: int = 1) -> Event | None:
    """``DELETE``: the event to fire, or None when already Canceled (a harmless repeat). ``wait``
    is the Retry-After of a refusal while a charge is in flight."""
    if pi.status is S.CANCELED:
        return None
    if pi.status is S.CHARGING:
        raise ChargeInProgress("A charge of this payment intent is in progress; retry.", wait)
    if pi.status is not S.CREATED:
        raise InvalidState(
            f"The payment intent is {pi.status.value}; only a Created payment intent "
            "can be canceled."
        )
    return E.CANCEL


def charge_claim(pi: PaymentIntent, *, wait: int = 1) -> Event:
    """The claim of a charge, or why this payment intent cannot be charged now."""
    if pi.setup_intent_id is None:
        raise NotMerchantInitiated(
            "The payment intent has no setupIntentId; only merchant-initiated payment "
            "intents can be charged."
        )
    if pi.status is S.CHARGING:
        raise ChargeInProgress("A charge of this payment intent is in progress; retry.", wait)
    if pi.status is not S.CREATED:
        raise InvalidState(
            f"The payment intent is {pi.public_status.value}; only a Created payment "
            "intent can be charged."
        )
    return E.CLAIM
