"""The payment intent: one merchant-initiated charge of a setup intent's card.

Owns the PaymentIntent record, its statuses and the TRANSITIONS table. "Charged at most once, in
full" lives here: the only way to Captured is Charging → Captured, the only way into Charging is
from Created, and nothing leaves Captured except a refund or reversal. ``Charging`` is internal:
reads show it as ``Created`` until the acquirer's answer is settled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.errors import IllegalTransition
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
    REFUND_ALL = "refund_all"
    REVERSE = "reverse"


S, E = Status, Event

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.CREATED, E.CLAIM): S.CHARGING,
    (S.CHARGING, E.CAPTURE): S.CAPTURED,
    (S.CHARGING, E.RELEASE): S.CREATED,
    (S.CREATED, E.CANCEL): S.CANCELED,
    (S.CREATED, E.EXPIRE): S.CANCELED,
    (S.CAPTURED, E.REFUND_ALL): S.REFUNDED,
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

    @property
    def public_status(self) -> Status:
        return S.CREATED if self.status is S.CHARGING else self.status

    @property
    def charge_key(self) -> str:
        """The acquirer idempotency key: every attempt to charge this intent uses the same one."""
        return f"charge:{self.id}"


def transition(pi: PaymentIntent, event: Event, now: datetime, **changes: Any) -> PaymentIntent:
    """Apply ``event``, or raise IllegalTransition (changing nothing) if the table forbids it."""
    target = TRANSITIONS.get((pi.status, event))
    if target is None:
        raise IllegalTransition(
            f"The payment intent is {pi.public_status.value}; "
            f"it cannot {event.value.replace('_', ' ')}."
        )
    if target is S.CAPTURED:
        changes.setdefault("captured_amount", pi.amount.value)
    return replace(pi, status=target, updated_at=now, **changes)


def due_event(pi: PaymentIntent, now: datetime) -> Event | None:
    if pi.status is S.CREATED and now >= pi.expire_at:
        return E.EXPIRE
    return None
