"""Past-tense facts recorded in the outbox with each state change: the source of webhook payloads.

``change_event`` is the one rule that decides whether a change causes an event: a new intent
(saved for the first time, whatever transitions its draft went through) causes exactly one
``*.created`` carrying the status it is saved with; a saved intent causes ``*.status_updated`` if
and only if its public status changed. Events carry ids and statuses only, never card data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.domain.timefmt import iso

SETUP_INTENT_CREATED = "setup_intent.created"
SETUP_INTENT_STATUS_UPDATED = "setup_intent.status_updated"
PAYMENT_INTENT_CREATED = "payment_intent.created"
PAYMENT_INTENT_STATUS_UPDATED = "payment_intent.status_updated"

Intent = SetupIntent | PaymentIntent


@dataclass(frozen=True, slots=True)
class DomainEvent:
    id: str
    event: str
    account_id: str
    created_at: datetime
    data: dict[str, str]

    def payload(self) -> bytes:
        """The webhook body, byte for byte (CONTRACT §8.2): keys in the contract's order, no
        whitespace; the same bytes on every attempt."""
        doc = {
            "id": self.id,
            "event": self.event,
            "accountId": self.account_id,
            "createdAt": iso(self.created_at),
            "data": self.data,
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def change_event(event_id: str, old: Intent | None, new: Intent) -> DomainEvent | None:
    """The event that saving ``new`` over ``old`` (None: a first save) causes, if any."""
    created = old is None
    if old is not None and old.public_status is new.public_status:
        return None
    if isinstance(new, SetupIntent):
        return DomainEvent(
            id=event_id,
            event=SETUP_INTENT_CREATED if created else SETUP_INTENT_STATUS_UPDATED,
            account_id=new.account_id,
            created_at=new.updated_at,
            data={"setupIntentId": new.id, "setupIntentStatus": new.public_status.value},
        )
    return DomainEvent(
        id=event_id,
        event=PAYMENT_INTENT_CREATED if created else PAYMENT_INTENT_STATUS_UPDATED,
        account_id=new.account_id,
        created_at=new.updated_at,
        data={
            "paymentIntentId": new.id,
            "paymentStatus": new.public_status.value,
            "captureMode": "Auto",
        },
    )
