"""The setup intent: a customer's consent and card kept for later merchant-initiated charges.

Owns the SetupIntent record, its statuses and the TRANSITIONS table, the only place where a setup
intent's status may change. ``transition`` applies one event or raises IllegalTransition and
changes nothing. ``due_event`` says which time-driven event (Expire, CardExpiry) is due at ``now``.

``ChargeHeld`` is internal: a charge of one of its payment intents is in flight. Reads show it as
``Authorized`` (``public_status``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.card import CardOnFile
from cardkeep.domain.errors import IllegalTransition
from cardkeep.domain.money import Money


class Status(StrEnum):
    CREATED = "Created"
    AUTHORIZED = "Authorized"
    EXPIRED = "Expired"
    CARD_EXPIRED = "CardExpired"
    CANCELED = "Canceled"
    COMPLETED = "Completed"
    CLOSED = "Closed"
    CHARGE_HELD = "ChargeHeld"


class Event(StrEnum):
    AUTHORIZE = "authorize"  # card approved
    DECLINE = "decline"  # card declined: stays Created, an attempt is recorded
    CARD_EXPIRED_AT_ENTRY = "card_expired_at_entry"
    EXPIRE = "expire"  # account clock passed expireAt
    CANCEL = "cancel"
    CLOSE = "close"
    CARD_EXPIRY = "card_expiry"  # the card's expiry month ended while Authorized
    HOLD_FOR_CHARGE = "hold_for_charge"
    COMPLETE = "complete"  # a charge of one of its payment intents succeeded
    RELEASE = "release"  # the charge was declined or failed: usable again
    CARD_EXPIRED_AT_CHARGE = "card_expired_at_charge"


S, E = Status, Event

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.CREATED, E.AUTHORIZE): S.AUTHORIZED,
    (S.CREATED, E.DECLINE): S.CREATED,
    (S.CREATED, E.CARD_EXPIRED_AT_ENTRY): S.CARD_EXPIRED,
    (S.CREATED, E.EXPIRE): S.EXPIRED,
    (S.CREATED, E.CANCEL): S.CANCELED,
    (S.AUTHORIZED, E.CLOSE): S.CLOSED,
    (S.AUTHORIZED, E.CARD_EXPIRY): S.CARD_EXPIRED,
    (S.AUTHORIZED, E.HOLD_FOR_CHARGE): S.CHARGE_HELD,
    (S.CHARGE_HELD, E.COMPLETE): S.COMPLETED,
    (S.CHARGE_HELD, E.RELEASE): S.AUTHORIZED,
    (S.CHARGE_HELD, E.CARD_EXPIRED_AT_CHARGE): S.CARD_EXPIRED,
}

# Statuses from which nothing ever leaves.
FINAL = frozenset({S.EXPIRED, S.CARD_EXPIRED, S.CANCELED, S.COMPLETED, S.CLOSED})


@dataclass(frozen=True, slots=True)
class ClientSecret:
    """The hosted-page credential: only its SHA-256 hash is kept."""

    hash: str
    issued_at: datetime
    expires_at: datetime
    used: bool = False
    failed_attempts: int = 0


@dataclass(frozen=True, slots=True)
class SetupIntent:
    id: str
    account_id: str
    status: Status
    created_at: datetime
    updated_at: datetime
    expire_at: datetime
    reference: str
    terms: str
    mit_type: str
    description: str | None = None
    intended_amount: Money | None = None
    # Optional request objects echoed back in canonical wire form (customer, billingAddress, …).
    extras: dict[str, Any] = field(default_factory=dict)
    card: CardOnFile | None = None
    payment_details: AuthAttempt | None = None
    setup_events: tuple[AuthAttempt, ...] = ()
    secret: ClientSecret | None = None

    @property
    def public_status(self) -> Status:
        return S.AUTHORIZED if self.status is S.CHARGE_HELD else self.status


def transition(si: SetupIntent, event: Event, now: datetime, **changes: Any) -> SetupIntent:
    """Apply ``event``, or raise IllegalTransition (changing nothing) if the table forbids it."""
    target = TRANSITIONS.get((si.status, event))
    if target is None:
        raise IllegalTransition(
            f"The setup intent is {si.public_status.value}; "
            f"it cannot {event.value.replace('_', ' ')}."
        )
    return replace(si, status=target, updated_at=now, **changes)


def due_event(si: SetupIntent, now: datetime) -> Event | None:
    """The time-driven event that the account clock says has happened, if any."""
    if si.status is S.CREATED and now >= si.expire_at:
        return E.EXPIRE
    if si.status is S.AUTHORIZED and si.card is not None and si.card.expiry.is_expired(now):
        return E.CARD_EXPIRY
    return None
