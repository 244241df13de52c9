"""Retention: what a setup or payment intent in a final status keeps once it is old enough.

An intent whose status can no longer change in a way that needs the card (setup intents:
``setup_intent.FINAL``; payment intents: ``PURGEABLE_PI``) and whose ``updated_at`` is at least
the retention period before the account clock's now is *purged*: its masked card (the card on
file, ``paymentDetails.card``, the card of every ``setupEvents``/``paymentEvents`` entry, the
cardholder's name with it) and the customer's details (``PERSONAL_EXTRAS``: customer, billing and
shipping addresses, the request's IP address and user agent) are dropped, and ``purged_at`` says
when. Everything money and audit need stays: ids, statuses, amounts (captured, refunded), times,
event types, messages, auth codes, transaction ids, the charge attempt count (the acquirer key a
refund names), reference, description, terms, item and tax lines, configuration and metadata.

A ``Captured`` payment intent can still be refunded or reversed after it is purged: a refund
needs its amounts and the acquirer key of the capture, never the card. A purged intent is never
purged again: ``purged_at`` makes a second run a no-op.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from cardkeep.domain import payment_intent as pim
from cardkeep.domain import setup_intent as sim
from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.setup_intent import SetupIntent

# Payment intents nothing will charge again. Captured ones may still be refunded or reversed,
# which needs amounts and the capture's key only.
PURGEABLE_PI = frozenset(
    {pim.Status.CAPTURED, pim.Status.REFUNDED, pim.Status.REVERSED, pim.Status.CANCELED}
)
PURGEABLE_SI = sim.FINAL
# The ``extras`` that describe a person: dropped by a purge. The others (config, metadata, order
# details, item and tax lines, cardHolderNotPresent) are the merchant's and stay.
PERSONAL_EXTRAS = ("customer", "billingAddress", "shippingDetails", "requestSecurity")


def _due(updated_at: datetime, purged_at: datetime | None, now: datetime, age: timedelta) -> bool:
    return purged_at is None and updated_at <= now - age


def _without_card(attempt: AuthAttempt) -> AuthAttempt:
    return replace(attempt, card=None) if attempt.card is not None else attempt


def _impersonal(extras: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extras.items() if k not in PERSONAL_EXTRAS}


def purged_si(si: SetupIntent, now: datetime, older_than: timedelta) -> SetupIntent | None:
    """``si`` purged at ``now`` (its account's clock), or None when it is not to be purged: not
    final, purged already, or changed less than ``older_than`` ago."""
    if si.status not in PURGEABLE_SI or not _due(si.updated_at, si.purged_at, now, older_than):
        return None
    details = si.payment_details
    return replace(
        si,
        card=None,
        payment_details=_without_card(details) if details is not None else None,
        setup_events=tuple(_without_card(a) for a in si.setup_events),
        extras=_impersonal(si.extras),
        purged_at=now,
    )


def purged_pi(pi: PaymentIntent, now: datetime, older_than: timedelta) -> PaymentIntent | None:
    """``pi`` purged at ``now`` (its account's clock), or None when it is not to be purged."""
    if pi.status not in PURGEABLE_PI or not _due(pi.updated_at, pi.purged_at, now, older_than):
        return None
    details, pending = pi.payment_details, pi.pending_attempt
    return replace(
        pi,
        payment_details=_without_card(details) if details is not None else None,
        payment_events=tuple(_without_card(a) for a in pi.payment_events),
        pending_attempt=_without_card(pending) if pending is not None else None,
        extras=_impersonal(pi.extras),
        purged_at=now,
    )
