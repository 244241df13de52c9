"""The setup intent: a customer's consent and card kept for later merchant-initiated charges.

Owns the SetupIntent record, its statuses, the TRANSITIONS table (the only place where a setup
intent's status may change) and, beside it, the refusal rules: which error an operation gets in
each status, and which repeat is a harmless no-op. ``transition`` applies one event or raises
IllegalTransition and changes nothing. ``due_event`` says which time-driven event (expire,
card_expiry) the account clock says has happened.

``ChargeHeld`` is internal: a charge of one of its payment intents is in flight. Reads show it as
``Authorized`` (``public_status``). Only ``Authorized`` and ``ChargeHeld`` hold a card in the vault:
a transition out of them drops the vault token, and the use case forgets the card with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.card import CardOnFile
from cardkeep.domain.errors import (
    ChargeInProgress,
    IllegalTransition,
    InvalidState,
    SetupIntentNotUsable,
)
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
    CARD_EXPIRED_AT_CHARGE = "card_expired_at_charge"  # the acquirer said the card has expired


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
# The only statuses in which the card stays in the vault.
HOLDS_CARD = frozenset({S.AUTHORIZED, S.CHARGE_HELD})


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
    # When retention scrubbed its card and customer details (``domain.retention``), if it has.
    purged_at: datetime | None = None

    @property
    def public_status(self) -> Status:
        return S.AUTHORIZED if self.status is S.CHARGE_HELD else self.status

    @property
    def vault_token(self) -> str | None:
        return self.card.vault_token if self.card is not None else None


def transition(si: SetupIntent, event: Event, now: datetime, **changes: Any) -> SetupIntent:
    """Apply ``event``, or raise IllegalTransition (changing nothing) if the table forbids it.

    Leaving the statuses that hold a card drops the card's vault token from the record (the masked
    card stays for display); the caller forgets the card in the same transaction.
    """
    target = TRANSITIONS.get((si.status, event))
    if target is None:
        raise IllegalTransition(
            f"The setup intent is {si.public_status.value}; "
            f"it cannot {event.value.replace('_', ' ')}."
        )
    card = changes.get("card", si.card)
    if target not in HOLDS_CARD and card is not None and card.vault_token is not None:
        changes["card"] = replace(card, vault_token=None)
    return replace(si, status=target, updated_at=now, **changes)


def with_secret(si: SetupIntent, secret: ClientSecret, now: datetime) -> SetupIntent:
    """A new client session secret for a Created intent (the old one stops working)."""
    if si.status is not S.CREATED:
        raise InvalidState(
            f"The setup intent is {si.public_status.value}; only a Created setup intent "
            "has a client session secret."
        )
    return replace(si, secret=secret, updated_at=now)


def due_event(si: SetupIntent, now: datetime) -> Event | None:
    """The time-driven event that the account clock says has happened, if any."""
    if si.status is S.CREATED and now >= si.expire_at:
        return E.EXPIRE
    if si.status is S.AUTHORIZED and si.card is not None and si.card.expiry.is_expired(now):
        return E.CARD_EXPIRY
    return None


# -- refusal rules: which event an operation fires in each status, or why it is refused ----------


def deletion(si: SetupIntent, *, include_authorized: bool, wait: int = 1) -> Event | None:
    """``DELETE``: the event to fire, or None when the intent is already Canceled/Closed (a
    harmless repeat answered with the unchanged object). ``wait`` is the Retry-After of a refusal
    while a charge is in flight."""
    if si.status in (S.CANCELED, S.CLOSED):
        return None
    if si.status is S.CHARGE_HELD:
        raise ChargeInProgress("A charge of this setup intent is in progress; retry.", wait)
    if si.status is S.CREATED:
        return E.CANCEL
    if si.status is S.AUTHORIZED:
        if not include_authorized:
            raise InvalidState(
                "The setup intent is Authorized; pass includeAuthorized=true to close it."
            )
        return E.CLOSE
    raise InvalidState(
        f"The setup intent is {si.status.value}; only Created or Authorized setup "
        "intents can be canceled or closed."
    )


def require_usable(si: SetupIntent) -> None:
    """A new payment intent may name only an Authorized setup intent."""
    if si.public_status is not S.AUTHORIZED:
        raise SetupIntentNotUsable(
            f"The setup intent is {si.public_status.value}; only an Authorized setup intent "
            "can be charged."
        )


def charge_hold(si: SetupIntent, *, wait: int = 1) -> Event:
    """The claim of a charge: hold the card, or say why it cannot be charged now."""
    if si.status is S.CHARGE_HELD:
        raise ChargeInProgress("A charge of this setup intent is in progress; retry.", wait)
    if si.status is not S.AUTHORIZED or si.vault_token is None:
        raise SetupIntentNotUsable(
            f"The setup intent is {si.public_status.value}; only an Authorized setup "
            "intent can be charged."
        )
    return E.HOLD_FOR_CHARGE
