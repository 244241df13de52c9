"""Webhook subscriptions and deliveries as values, with the rules of CONTRACT §8.

What a subscription may listen to (the event catalogue of ``GET /webhooks/events``), its
limits (20 subscriptions per account, 2 secrets per subscription, one active secret that cannot
be deleted), the delivery state machine (``DELIVERY_TRANSITIONS``) and the retry schedule: the
first attempt as soon as the change commits, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
10 h, each ±10 % jitter; after the 8th failure the delivery is ``failed`` until replayed. Pure:
ids, secrets, ``now`` and the jitter are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from cardkeep.domain.errors import (
    Conflict,
    IllegalTransition,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from cardkeep.domain.events import (
    PAYMENT_INTENT_CREATED,
    PAYMENT_INTENT_STATUS_UPDATED,
    SETUP_INTENT_CREATED,
    SETUP_INTENT_STATUS_UPDATED,
)

CATALOGUE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PaymentIntent", (PAYMENT_INTENT_CREATED, PAYMENT_INTENT_STATUS_UPDATED)),
    ("SetupIntent", (SETUP_INTENT_CREATED, SETUP_INTENT_STATUS_UPDATED)),
)
EVENT_NAMES = frozenset(name for _, names in CATALOGUE for name in names)

MAX_SUBSCRIPTIONS = 20
MAX_SECRETS = 2
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500

# After the first attempt fails: the delay before each further attempt (CONTRACT §8.4).
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = 1 + len(RETRY_DELAYS)
JITTER = 0.10


@dataclass(frozen=True, slots=True)
class Secret:
    id: str
    value: str
    created_at: datetime
    is_active: bool


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    account_id: str
    events: tuple[str, ...]
    url: str
    description: str | None
    secrets: tuple[Secret, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def active_secret(self) -> Secret:
        return next(s for s in self.secrets if s.is_active)

    def add_secret(self, secret: Secret) -> Subscription:
        """A new, inactive secret; a third is a conflict."""
        if len(self.secrets) >= MAX_SECRETS:
            raise Conflict(f"A subscription has at most {MAX_SECRETS} secrets; delete one first.")
        return replace(self, secrets=(*self.secrets, replace(secret, is_active=False)))

    def activate(self, secret_id: str) -> Subscription:
        self._secret(secret_id)
        secrets = tuple(replace(s, is_active=s.id == secret_id) for s in self.secrets)
        return replace(self, secrets=secrets)

    def delete_secret(self, secret_id: str) -> Subscription:
        if self._secret(secret_id).is_active:
            raise InvalidState(
                "The secret is the active one; activate another secret before deleting it."
            )
        return replace(self, secrets=tuple(s for s in self.secrets if s.id != secret_id))

    def _secret(self, secret_id: str) -> Secret:
        for secret in self.secrets:
            if secret.id == secret_id:
                return secret
        raise NotFound(f"No secret with id {secret_id} on this subscription.")


def check_events(events: object, path: str = "Events") -> tuple[str, ...]:
    """A non-empty list of names from the catalogue, without duplicates (order kept)."""
    if not isinstance(events, list) or not events:
        raise ValidationFailed.one(path, "The Events field must be a non-empty array of names.")
    unknown = [e for e in events if not isinstance(e, str) or e not in EVENT_NAMES]
    if unknown:
        raise ValidationFailed.one(
            path,
            f"Unknown event name(s): {', '.join(map(str, unknown))}. "
            f"Known: {', '.join(sorted(EVENT_NAMES))}.",
        )
    return tuple(dict.fromkeys(events))


def check_description(description: object) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        raise ValidationFailed.one(
            "Description",
            f"The Description field must be a string of at most {MAX_DESCRIPTION_LENGTH} "
            "characters.",
        )
    return description


def check_subscription_count(existing: int) -> None:
    if existing >= MAX_SUBSCRIPTIONS:
        raise Conflict(f"An account has at most {MAX_SUBSCRIPTIONS} webhook subscriptions.")


def check_unique_url(url: str, taken: Sequence[str]) -> None:
    """``taken``: the URLs the account's subscriptions already use."""
    if url in taken:
        raise Conflict("A subscription to this URL exists already.")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryEvent(StrEnum):
    SUCCEEDED = "succeeded"
    ATTEMPT_FAILED = "attempt_failed"  # another attempt is scheduled
    GAVE_UP = "gave_up"  # the last attempt failed
    REPLAYED = "replayed"


DELIVERY_TRANSITIONS: dict[tuple[DeliveryStatus, DeliveryEvent], DeliveryStatus] = {
    (DeliveryStatus.PENDING, DeliveryEvent.SUCCEEDED): DeliveryStatus.DELIVERED,
    (DeliveryStatus.PENDING, DeliveryEvent.ATTEMPT_FAILED): DeliveryStatus.PENDING,
    (DeliveryStatus.PENDING, DeliveryEvent.GAVE_UP): DeliveryStatus.FAILED,
    (DeliveryStatus.PENDING, DeliveryEvent.REPLAYED): DeliveryStatus.PENDING,
    (DeliveryStatus.FAILED, DeliveryEvent.REPLAYED): DeliveryStatus.PENDING,
    (DeliveryStatus.DELIVERED, DeliveryEvent.REPLAYED): DeliveryStatus.PENDING,
}


def delivery_transition(status: DeliveryStatus, event: DeliveryEvent) -> DeliveryStatus:
    try:
        return DELIVERY_TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransition(f"A {status.value} delivery cannot be {event.value}.") from None


def after_failure(attempts: int) -> DeliveryEvent:
    """What a failed attempt (the ``attempts``-th, counting from 1) makes of its delivery."""
    return DeliveryEvent.GAVE_UP if attempts >= MAX_ATTEMPTS else DeliveryEvent.ATTEMPT_FAILED


def next_attempt_at(attempts: int, failed_at: datetime, jitter: float) -> datetime:
    """When to try again after the ``attempts``-th attempt failed (1 ≤ attempts < MAX_ATTEMPTS).
    ``jitter`` in [-1, 1] spreads it by up to ±10 %."""
    if not 1 <= attempts < MAX_ATTEMPTS:
        raise ValueError(f"no attempt follows attempt {attempts}")
    if not -1.0 <= jitter <= 1.0:
        raise ValueError("jitter must be within [-1, 1]")
    delay = RETRY_DELAYS[attempts - 1]
    return failed_at + delay * (1 + JITTER * jitter)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt made of a delivery, written back under the lease that made it."""

    status: DeliveryStatus
    attempts: int
    at: datetime
    next_attempt_at: datetime | None
    response_status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one subscription. Times are on the account's clock."""

    id: str
    account_id: str
    subscription_id: str
    event_id: str
    event: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None = None
    last_response_status: int | None = None
    last_error: str | None = None

    def attempted(
        self,
        at: datetime,
        *,
        delivered: bool,
        response_status: int | None,
        error: str | None,
        jitter: float,
    ) -> AttemptOutcome:
        """The outcome of one more attempt made at ``at``: delivered, retried on the schedule,
        or failed after the last one."""
        attempts = self.attempts + 1
        event = DeliveryEvent.SUCCEEDED if delivered else after_failure(attempts)
        status = delivery_transition(self.status, event)
        due = None
        if event is DeliveryEvent.ATTEMPT_FAILED:
            # A replayed delivery that had used up its attempts gets the last delay again.
            due = next_attempt_at(min(attempts, MAX_ATTEMPTS - 1), at, jitter)
        return AttemptOutcome(status, attempts, at, due, response_status, error)

    def recorded(self, outcome: AttemptOutcome) -> Delivery:
        return replace(
            self,
            status=outcome.status,
            attempts=outcome.attempts,
            last_attempt_at=outcome.at,
            next_attempt_at=outcome.next_attempt_at,
            last_response_status=outcome.response_status,
            last_error=outcome.error,
        )

    def replayed(self, now: datetime) -> Delivery:
        """Pending again, due at ``now``; a replayed delivery gets one more attempt."""
        status = delivery_transition(self.status, DeliveryEvent.REPLAYED)
        return replace(self, status=status, next_attempt_at=now)
