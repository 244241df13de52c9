"""Webhook subscriptions, the delivery log and replay as use cases, in process (the in-memory
storage, a test DNS): the contract's limits and errors, sealed secrets, fan-out, replay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cardkeep.domain.account import Mode
from cardkeep.domain.errors import (
    Conflict,
    InvalidState,
    NotFound,
    UrlNotAllowed,
    ValidationFailed,
)
from cardkeep.domain.webhooks import AttemptOutcome, DeliveryStatus
from tests.world import World

URL = "https://hooks.example.com/in"


@pytest.fixture
def world() -> World:
    w = World()
    w.dns["hooks.example.com"] = ["93.184.216.34"]
    return w


def test_a_subscription_has_one_active_sealed_secret(world: World) -> None:
    hooks = world.services.webhooks
    sub = hooks.create(world.account, ["payment_intent.created"], URL, "mine")
    (secret,) = sub.secrets
    assert secret.is_active
    assert len(secret.value) == 22
    stored = world.storage.tables.subscriptions[sub.id]
    assert secret.value.encode() not in stored.secrets[0].sealed  # sealed at rest
    assert hooks.all(world.account) == [sub]
    assert hooks.get(world.account, sub.id) == sub
    other, _, _ = world.services.accounts.create("other", Mode.SANDBOX)
    assert hooks.all(other) == []
    with pytest.raises(NotFound):
        hooks.get(other, sub.id)


def test_limits_conflicts_and_bad_fields(world: World) -> None:
    hooks = world.services.webhooks
    hooks.create(world.account, ["payment_intent.created"], URL)
    with pytest.raises(Conflict):
        hooks.create(world.account, ["payment_intent.created"], URL)
    for n in range(19):
        world.dns[f"h{n}.example.com"] = ["93.184.216.34"]
        hooks.create(world.account, ["setup_intent.created"], f"https://h{n}.example.com/")
    world.dns["h20.example.com"] = ["93.184.216.34"]
    with pytest.raises(Conflict):
        hooks.create(world.account, ["setup_intent.created"], "https://h20.example.com/")
    for events, url in ((["x.y"], URL + "1"), (["payment_intent.created"], 5), ([], URL + "2")):
        with pytest.raises(ValidationFailed):
            hooks.create(world.account, events, url)
    with pytest.raises(ValidationFailed):
        hooks.create(world.account, ["payment_intent.created"], URL + "3", "d" * 501)


def test_update_checks_what_it_changes(world: World) -> None:
    hooks = world.services.webhooks
    sub = hooks.create(world.account, ["payment_intent.created"], URL, "first")
    world.clock.now_value += timedelta(seconds=5)
    changed = hooks.update(world.account, sub.id, events=["setup_intent.created"])
    assert (changed.events, changed.url, changed.description) == (
        ("setup_intent.created",),
        URL,
        "first",
    )
    assert changed.updated_at > sub.updated_at
    assert hooks.update(world.account, sub.id, description=None).description is None
    with pytest.raises(ValidationFailed):
        hooks.update(world.account, sub.id)
    world.dns["evil.example.com"] = ["10.0.0.5"]
    with pytest.raises(UrlNotAllowed):
        hooks.update(world.account, sub.id, url="https://evil.example.com/")
    with pytest.raises(NotFound):
        hooks.update(world.account, "ws_nope", description="x")


def test_secrets_rotate(world: World) -> None:
    hooks = world.services.webhooks
    sub = hooks.create(world.account, ["payment_intent.created"], URL)
    two = hooks.add_secret(world.account, sub.id)
    old, new = two.secrets
    assert not new.is_active
    with pytest.raises(Conflict):
        hooks.add_secret(world.account, sub.id)
    with pytest.raises(InvalidState):
        hooks.delete_secret(world.account, sub.id, old.id)
    hooks.activate_secret(world.account, sub.id, new.id)
    after = hooks.delete_secret(world.account, sub.id, old.id)
    assert [(s.id, s.is_active) for s in after.secrets] == [(new.id, True)]
    assert hooks.get(world.account, sub.id).secrets == after.secrets
    with pytest.raises(NotFound):
        hooks.activate_secret(world.account, sub.id, old.id)


def test_events_fan_out_and_the_log_pages(world: World) -> None:
    hooks = world.services.webhooks
    sub = hooks.create(world.account, ["setup_intent.created"], URL)
    ids = [world.authorized() for _ in range(3)]
    page, after = hooks.deliveries(world.account, limit=2)
    assert len(page) == 2
    assert after == page[-1].id
    rest, end = hooks.deliveries(world.account, after=after, limit=2)
    assert (len(rest), end) == (1, None)
    assert {d.subscription_id for d in page + rest} == {sub.id}
    assert len({d.event_id for d in page + rest}) == len(ids)
    assert hooks.deliveries(world.account, status="failed")[0] == []
    for bad in ({"status": "lost"}, {"limit": 0}, {"limit": 101}, {"after": "whd_nope"}):
        with pytest.raises(ValidationFailed):
            hooks.deliveries(world.account, **bad)  # type: ignore[arg-type]
    hooks.delete(world.account, sub.id)
    assert hooks.deliveries(world.account)[0] == []  # pending ones went with it
    with pytest.raises(NotFound):
        hooks.delete(world.account, sub.id)


def test_replay_requeues_a_failed_delivery(world: World) -> None:
    hooks = world.services.webhooks
    sub = hooks.create(world.account, ["setup_intent.created"], URL)
    world.authorized()
    (delivery,), _ = hooks.deliveries(world.account)
    until = world.clock.now() + timedelta(minutes=1)
    with world.storage.transaction(write=True) as uow:
        (leased,) = uow.deliveries.lease_due(world.clock.now(), until, 5)
        outcome = AttemptOutcome(DeliveryStatus.FAILED, 8, world.clock.now(), None, 500, "HTTP 500")
        assert uow.deliveries.finish(leased.id, until, outcome)
        uow.commit()
    assert [d.id for d in hooks.replay_failed_since(world.clock.now())] == [delivery.id]
    again = hooks.replay(world.account, delivery.id)
    assert (again.status, again.attempts) == (DeliveryStatus.PENDING, 8)
    with pytest.raises(NotFound):
        hooks.replay(world.account, "whd_nope")
    hooks.delete(world.account, sub.id)
    with world.storage.transaction(write=True) as uow:  # the re-queued one went with it
        (leased,) = uow.deliveries.lease_due(world.clock.now(), until, 5) or [None]
        assert leased is None
    assert world.dispatcher.prune(30) == 0


def test_prune_deletes_what_was_delivered_long_ago(world: World) -> None:
    hooks = world.services.webhooks
    hooks.create(world.account, ["setup_intent.created"], URL)
    world.authorized()
    until = world.clock.now() + timedelta(minutes=1)
    with world.storage.transaction(write=True) as uow:
        (leased,) = uow.deliveries.lease_due(world.clock.now(), until, 5)
        ok = AttemptOutcome(DeliveryStatus.DELIVERED, 1, world.clock.now(), None, 204, None)
        assert uow.deliveries.finish(leased.id, until, ok)
        uow.commit()
    assert world.dispatcher.prune(30) == 0
    world.clock.now_value += timedelta(days=31)
    assert world.dispatcher.prune(30) == 2  # the delivery and its event
    assert hooks.deliveries(world.account)[0] == []
