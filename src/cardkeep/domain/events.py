"""Past-tense facts recorded in the outbox with each state change: the source of webhook payloads.

Events carry ids and statuses only, never card data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.setup_intent import SetupIntent

SETUP_INTENT_CREATED = "setup_intent.created"
SETUP_INTENT_STATUS_UPDATED = "setup_intent.status_updated"
PAYMENT_INTENT_CREATED = "payment_intent.created"
PAYMENT_INTENT_STATUS_UPDATED = "payment_intent.status_updated"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    id: str
    event: str
    account_id: str
    created_at: datetime
    data: dict[str, str]


def setup_intent_event(event_id: str, si: SetupIntent, *, created: bool) -> DomainEvent:
    return DomainEvent(
        id=event_id,
        event=SETUP_INTENT_CREATED if created else SETUP_INTENT_STATUS_UPDATED,
        account_id=si.account_id,
        created_at=si.updated_at,
        data={"setupIntentId": si.id, "setupIntentStatus": si.public_status.value},
    )


def payment_intent_event(event_id: str, pi: PaymentIntent, *, created: bool) -> DomainEvent:
    return DomainEvent(
        id=event_id,
        event=PAYMENT_INTENT_CREATED if created else PAYMENT_INTENT_STATUS_UPDATED,
        account_id=pi.account_id,
        created_at=pi.updated_at,
        data={
            "paymentIntentId": pi.id,
            "paymentStatus": pi.public_status.value,
            "captureMode": "Auto",
        },
    )
