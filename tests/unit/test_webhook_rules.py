"""The pure webhook rules: the event catalogue, subscription limits, secrets, the delivery
transition table and the retry schedule with its jitter bounds (CONTRACT §8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cardkeep.domain import webhooks as wh
from cardkeep.domain.errors import (
    Conflict,
    IllegalTransition,
    InvalidState,
    NotFound,
    ValidationFailed,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _subscription(*secrets: wh.Secret) -> wh.Subscription:
    first = wh.Secret("sc_1", "a" * 22, NOW, is_active=True)
    return wh.Subscription(
        id="ws_1",
        account_id="acc_1",
        events=("payment_intent.created",),
        url="https://example.com/hook",
        description=None,
        secrets=secrets or (first,),
        created_at=NOW,
        updated_at=NOW,
    )


def test_events_must_come_from_the_catalogue() -> None:
    assert wh.check_events(["setup_intent.created", "setup_intent.created"]) == (
        "setup_intent.created",
    )
    for bad in ([], "payment_intent.created", ["payment_intent.deleted"], [1]):
        with pytest.raises(ValidationFailed):
            wh.check_events(bad)
    assert {n for _, names in wh.CATALOGUE for n in names} == wh.EVENT_NAMES


def test_description_and_limits() -> None:
    assert wh.check_description(None) is None
    assert wh.check_description("mine") == "mine"
    with pytest.raises(ValidationFailed):
        wh.check_description("x" * 501)
    with pytest.raises(ValidationFailed):
        wh.check_description(3)
    wh.check_subscription_count(19)
    with pytest.raises(Conflict):
        wh.check_subscription_count(20)
    sub = _subscription()
    wh.check_unique_url("https://example.com/other", [sub.url])
    with pytest.raises(Conflict):
        wh.check_unique_url(sub.url, [sub.url])


def test_secrets_rotate_one_active_at_most_two() -> None:
    sub = _subscription()
    assert sub.active_secret.id == "sc_1"
    two = sub.add_secret(wh.Secret("sc_2", "b" * 22, NOW, is_active=True))
    assert [s.is_active for s in two.secrets] == [True, False]  # a new secret is inactive
    with pytest.raises(Conflict):
        two.add_secret(wh.Secret("sc_3", "c" * 22, NOW, is_active=False))
    with pytest.raises(InvalidState):
        two.delete_secret("sc_1")
    rotated = two.activate("sc_2")
    assert rotated.active_secret.id == "sc_2"
    assert [s.id for s in rotated.delete_secret("sc_1").secrets] == ["sc_2"]
    with pytest.raises(NotFound):
        rotated.activate("sc_9")


def test_the_delivery_transition_table() -> None:
    p, d, f = wh.DeliveryStatus.PENDING, wh.DeliveryStatus.DELIVERED, wh.DeliveryStatus.FAILED
    assert wh.delivery_transition(p, wh.DeliveryEvent.SUCCEEDED) is d
    assert wh.delivery_transition(p, wh.DeliveryEvent.ATTEMPT_FAILED) is p
    assert wh.delivery_transition(p, wh.DeliveryEvent.GAVE_UP) is f
    assert wh.delivery_transition(f, wh.DeliveryEvent.REPLAYED) is p
    assert wh.delivery_transition(d, wh.DeliveryEvent.REPLAYED) is p
    for status in (d, f):
        for event in (wh.DeliveryEvent.SUCCEEDED, wh.DeliveryEvent.GAVE_UP):
            with pytest.raises(IllegalTransition):
                wh.delivery_transition(status, event)


def test_the_schedule_is_eight_attempts_over_about_27_6_hours() -> None:
    assert wh.MAX_ATTEMPTS == 8
    assert [wh.after_failure(n) for n in range(1, 9)] == [wh.DeliveryEvent.ATTEMPT_FAILED] * 7 + [
        wh.DeliveryEvent.GAVE_UP
    ]
    total = sum(wh.RETRY_DELAYS, timedelta())
    assert timedelta(hours=27.5) < total < timedelta(hours=27.7)
    offsets = [wh.next_attempt_at(n, NOW, 0.0) - NOW for n in range(1, 8)]
    assert offsets == list(wh.RETRY_DELAYS)
    assert wh.next_attempt_at(1, NOW, 1.0) - NOW == timedelta(seconds=5.5)
    assert wh.next_attempt_at(7, NOW, -1.0) - NOW == timedelta(hours=9)
    for bad_attempts, jitter in ((0, 0.0), (8, 0.0), (1, 1.5)):
        with pytest.raises(ValueError):
            wh.next_attempt_at(bad_attempts, NOW, jitter)


def _delivery(
    attempts: int = 0, status: wh.DeliveryStatus = wh.DeliveryStatus.PENDING
) -> wh.Delivery:
    return wh.Delivery(
        "whd_1", "acc_1", "ws_1", "evt_1", "payment_intent.created", status, attempts, NOW, NOW
    )


def test_an_attempt_moves_a_delivery_along_the_schedule() -> None:
    first = _delivery().attempted(
        NOW, delivered=False, response_status=500, error="HTTP 500", jitter=0
    )
    assert (first.status, first.attempts, first.next_attempt_at) == (
        wh.DeliveryStatus.PENDING,
        1,
        NOW + timedelta(seconds=5),
    )
    ok = _delivery(3).attempted(NOW, delivered=True, response_status=204, error=None, jitter=0)
    assert (ok.status, ok.attempts, ok.next_attempt_at) == (wh.DeliveryStatus.DELIVERED, 4, None)
    last = _delivery(7).attempted(
        NOW, delivered=False, response_status=None, error="timeout", jitter=0
    )
    assert (last.status, last.attempts, last.next_attempt_at) == (wh.DeliveryStatus.FAILED, 8, None)
    stored = _delivery(7).recorded(last)
    assert (stored.status, stored.last_error, stored.last_attempt_at) == (
        wh.DeliveryStatus.FAILED,
        "timeout",
        NOW,
    )
    again = stored.replayed(NOW + timedelta(days=1))
    assert (again.status, again.attempts) == (wh.DeliveryStatus.PENDING, 8)
    assert again.next_attempt_at == NOW + timedelta(days=1)
    once_more = again.attempted(NOW, delivered=False, response_status=500, error="x", jitter=0)
    assert once_more.status is wh.DeliveryStatus.FAILED  # a replay is one more attempt
    with pytest.raises(IllegalTransition):
        _delivery(1, wh.DeliveryStatus.DELIVERED).attempted(
            NOW, delivered=True, response_status=200, error=None, jitter=0
        )
