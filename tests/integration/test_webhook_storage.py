"""Webhook storage against its contract, on SQLite, PostgreSQL and the in-memory fake: fan-out at
commit (one delivery per matching subscription, none for a rolled-back change), leases of due
deliveries on the account's clock, attempts written only under the lease that made them, the
delivery log's cursor, replay, deletion and pruning."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cardkeep.domain.errors import Conflict
from cardkeep.domain.events import DomainEvent
from cardkeep.domain.setup_intent import Status as SI
from cardkeep.domain.webhooks import AttemptOutcome, DeliveryStatus
from cardkeep.service.ports import SealedSecret, Storage, StoredSubscription
from tests.factories import T0, make_si
from tests.integration.conftest import ACCOUNT

REAL = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def subscription(
    sub_id: str = "ws_one", url: str = "https://example.com/a", events: tuple[str, ...] = ()
) -> StoredSubscription:
    return StoredSubscription(
        id=sub_id,
        account_id=ACCOUNT.id,
        events=events or ("payment_intent.created", "setup_intent.status_updated"),
        url=url,
        description=None,
        secrets=(SealedSecret(f"sc_{sub_id}", b"\x00sealed", T0, is_active=True),),
        created_at=T0,
        updated_at=T0,
    )


def event(event_id: str, name: str = "payment_intent.created", at: datetime = T0) -> DomainEvent:
    return DomainEvent(event_id, name, ACCOUNT.id, at, {"paymentIntentId": "pi_1"})


def _add(storage: Storage, *subs: StoredSubscription) -> None:
    with storage.transaction(write=True) as uow:
        for sub in subs:
            uow.webhooks.add(sub)
        uow.commit()


def _record(storage: Storage, *events: DomainEvent) -> None:
    with storage.transaction(write=True) as uow:
        for e in events:
            uow.outbox.record(e)
        uow.commit()


def test_subscriptions_round_trip_and_urls_are_unique_per_account(storage: Storage) -> None:
    one = subscription()
    _add(storage, one)
    with storage.transaction(write=False) as uow:
        assert uow.webhooks.get(ACCOUNT.id, one.id) == one
        assert uow.webhooks.get("acc_other", one.id) is None
        assert uow.webhooks.list(ACCOUNT.id) == [one]
    with pytest.raises(Conflict), storage.transaction(write=True) as uow:
        uow.webhooks.add(subscription("ws_two"))
    two = subscription("ws_two", url="https://example.com/b")
    _add(storage, two)
    with pytest.raises(Conflict), storage.transaction(write=True) as uow:
        uow.webhooks.save(replace(two, url=one.url))
    rotated = replace(
        two,
        url="https://example.com/c",
        description="new",
        events=("setup_intent.created",),
        secrets=(
            SealedSecret("sc_ws_two", b"old", T0, is_active=False),
            SealedSecret("sc_2", b"new", T0 + timedelta(seconds=1), is_active=True),
        ),
        updated_at=T0 + timedelta(seconds=2),
    )
    with storage.transaction(write=True) as uow:
        uow.webhooks.save(rotated)
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert uow.webhooks.get(ACCOUNT.id, two.id) == rotated


def test_an_event_fans_out_to_each_matching_subscription_at_commit(storage: Storage) -> None:
    _add(
        storage,
        subscription("ws_a", "https://example.com/a"),
        subscription("ws_b", "https://example.com/b", events=("setup_intent.created",)),
        subscription("ws_c", "https://example.com/c", events=("payment_intent.created",)),
    )
    with storage.transaction(write=True) as uow:  # rolled back: no event, no delivery
        uow.outbox.record(event("evt_gone"))
    _record(storage, event("evt_one"))
    with storage.transaction(write=False) as uow:
        log = uow.deliveries.page(
            ACCOUNT.id, status=None, subscription_id=None, after=None, limit=50
        )
        assert sorted(d.subscription_id for d in log) == ["ws_a", "ws_c"]
        assert {d.id for d in log} == {"whd_one_a", "whd_one_c"}
        assert all(d.status is DeliveryStatus.PENDING and d.attempts == 0 for d in log)
        assert all(d.next_attempt_at == T0 for d in log)
        assert uow.deliveries.payload("evt_one") == event("evt_one").payload()
        assert uow.deliveries.payload("evt_gone") is None


def test_leases_follow_the_account_clock_and_attempts_need_their_lease(storage: Storage) -> None:
    _add(storage, subscription())
    later = REAL + timedelta(minutes=5)
    _record(storage, event("evt_now", at=REAL), event("evt_later", at=later))
    until = REAL + timedelta(seconds=30)
    with storage.transaction(write=False) as uow:
        assert uow.deliveries.next_due() == REAL
    with storage.transaction(write=True) as uow:
        leased = uow.deliveries.lease_due(REAL, until, 10)
        uow.commit()
    assert [d.event_id for d in leased] == ["evt_now"]
    with storage.transaction(write=True) as uow:  # leased: nobody else gets it
        assert uow.deliveries.lease_due(REAL + timedelta(seconds=1), until, 10) == []
        uow.commit()
    with storage.transaction(write=True) as uow:  # the account's clock moves 5 minutes on
        uow.accounts.set_clock_offset(ACCOUNT.id, 300 * 1_000_000)
        uow.commit()
    with storage.transaction(write=False) as uow:  # in real time: five minutes earlier
        assert uow.deliveries.next_due() == REAL - timedelta(minutes=5)  # "now", leased
    with storage.transaction(write=True) as uow:
        assert [d.event_id for d in uow.deliveries.lease_due(REAL, until, 10)] == ["evt_later"]
        uow.commit()
    outcome = AttemptOutcome(
        DeliveryStatus.PENDING, 1, REAL, REAL + timedelta(seconds=5), 500, "HTTP 500"
    )
    with storage.transaction(write=True) as uow:
        assert not uow.deliveries.finish(leased[0].id, until + timedelta(seconds=1), outcome)
        assert uow.deliveries.finish(leased[0].id, until, outcome)
        assert not uow.deliveries.finish(leased[0].id, until, outcome)  # the lease has ended
        uow.commit()
    with storage.transaction(write=False) as uow:
        got = uow.deliveries.get(ACCOUNT.id, leased[0].id)
        assert got is not None
        assert (got.attempts, got.last_response_status, got.last_error) == (1, 500, "HTTP 500")
        assert got.next_attempt_at == REAL + timedelta(seconds=5)
        assert uow.deliveries.get("acc_other", leased[0].id) is None


def test_the_log_pages_newest_first_with_filters_and_replay_requeues(storage: Storage) -> None:
    _add(storage, subscription("ws_a", "https://example.com/a"))
    _add(storage, subscription("ws_b", "https://example.com/b"))
    _record(storage, *(event(f"evt_{i}", at=T0 + timedelta(seconds=i)) for i in range(3)))
    with storage.transaction(write=False) as uow:
        page = uow.deliveries.page(
            ACCOUNT.id, status=None, subscription_id=None, after=None, limit=4
        )
        assert [d.event_id for d in page] == ["evt_2", "evt_2", "evt_1", "evt_1"]
        rest = uow.deliveries.page(
            ACCOUNT.id, status=None, subscription_id=None, after=page[-1].id, limit=4
        )
        assert [d.event_id for d in rest] == ["evt_0", "evt_0"]
        only_b = uow.deliveries.page(
            ACCOUNT.id, status=None, subscription_id="ws_b", after=None, limit=50
        )
        assert {d.subscription_id for d in only_b} == {"ws_b"}
        failed = uow.deliveries.page(
            ACCOUNT.id, status=DeliveryStatus.FAILED, subscription_id=None, after=None, limit=50
        )
        assert failed == []
    until = REAL + timedelta(seconds=30)
    with storage.transaction(write=True) as uow:
        target = uow.deliveries.lease_due(REAL, until, 1)[0]
        gave_up = AttemptOutcome(DeliveryStatus.FAILED, 8, REAL, None, None, "timeout")
        assert uow.deliveries.finish(target.id, until, gave_up)
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert [d.id for d in uow.deliveries.failed_since(REAL)] == [target.id]
    with storage.transaction(write=True) as uow:
        again = uow.deliveries.replay(ACCOUNT.id, target.id, REAL)
        assert uow.deliveries.replay("acc_other", target.id, REAL) is None
        uow.commit()
    assert again is not None
    assert (again.status, again.attempts, again.next_attempt_at) == (
        DeliveryStatus.PENDING,
        8,
        REAL,
    )


def test_deleting_a_subscription_drops_its_pending_deliveries(storage: Storage) -> None:
    _add(storage, subscription("ws_a", "https://example.com/a"))
    _add(storage, subscription("ws_b", "https://example.com/b"))
    _record(storage, event("evt_1"))
    with storage.transaction(write=True) as uow:
        assert uow.webhooks.delete(ACCOUNT.id, "ws_a")
        assert not uow.webhooks.delete(ACCOUNT.id, "ws_a")
        assert not uow.webhooks.delete("acc_other", "ws_b")
        uow.commit()
    with storage.transaction(write=False) as uow:
        log = uow.deliveries.page(
            ACCOUNT.id, status=None, subscription_id=None, after=None, limit=9
        )
        assert [d.subscription_id for d in log] == ["ws_b"]
        assert uow.webhooks.find("ws_a") is None


def test_pruning_keeps_what_is_still_owed(storage: Storage) -> None:
    _add(storage, subscription())
    old, new = T0, T0 + timedelta(days=40)
    _record(storage, event("evt_done", at=old), event("evt_owed", at=old), event("evt_new", at=new))
    _record(storage, event("evt_lonely", "setup_intent.created", at=old))  # no subscriber
    until = REAL + timedelta(seconds=30)
    with storage.transaction(write=True) as uow:
        done = uow.deliveries.lease_due(REAL, until, 1)[0]
        assert done.event_id == "evt_done"
        ok = AttemptOutcome(DeliveryStatus.DELIVERED, 1, REAL, None, 200, None)
        assert uow.deliveries.finish(done.id, until, ok)
        uow.commit()
    with storage.transaction(write=True) as uow:
        assert uow.deliveries.prune(old + timedelta(days=30)) == 3  # a delivery, two events
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert uow.deliveries.payload("evt_done") is None
        assert uow.deliveries.payload("evt_lonely") is None
        assert uow.deliveries.payload("evt_owed") is not None
        assert uow.deliveries.payload("evt_new") is not None


class InjectedFault(Exception):
    pass


def test_no_delivery_for_a_change_that_rolled_back(storage: Storage) -> None:
    """A fault between the write gate's outbox insert and the commit: neither the change, nor its
    event, nor a delivery is left; the same change committed gets exactly one delivery."""
    from cardkeep.service.changes import Changes

    _add(storage, subscription(events=("setup_intent.created",)))
    gate = Changes(storage, lambda: "evt_rolled")
    intent = make_si(SI.CREATED, id_="si_sandbox_rb", account_id=ACCOUNT.id)
    with pytest.raises(InjectedFault), storage.transaction(write=True) as uow:
        gate.insert(uow, intent)  # the setup intent, its event, the fan-out
        raise InjectedFault  # before commit
    with storage.transaction(write=False) as uow:
        assert uow.setup_intents.get(ACCOUNT.id, intent.id) is None
        assert uow.deliveries.payload("evt_rolled") is None
        assert uow.deliveries.next_due() is None
        assert (
            uow.deliveries.page(ACCOUNT.id, status=None, subscription_id=None, after=None, limit=9)
            == []
        )
    committed = Changes(storage, lambda: "evt_kept")
    with storage.transaction(write=True) as uow:
        committed.insert(uow, intent)
        uow.commit()
    with storage.transaction(write=False) as uow:
        (delivery,) = uow.deliveries.page(
            ACCOUNT.id, status=None, subscription_id=None, after=None, limit=9
        )
        assert delivery.event_id == "evt_kept"
