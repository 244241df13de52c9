"""Storage adapters against their contract: SQLite on a real file, and the in-memory fake held to
the same semantics (conditional writes, rollback, outbox with the change)."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cardkeep.cde import vault_store
from cardkeep.cde.vault import SealedCard
from cardkeep.domain.account import ApiKey
from cardkeep.domain.card import CardOnFile, Expiry, Scheme
from cardkeep.domain.errors import Conflict, Unavailable
from cardkeep.domain.events import DomainEvent, change_event
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import Status as PI
from cardkeep.domain.refund import Kind, Refund
from cardkeep.domain.refund import Status as RS
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.domain.setup_intent import Status as SI
from cardkeep.service.ports import Storage, StoredResponse
from cardkeep.storage import postgres, sqlite
from cardkeep.storage.memory import MemoryStorage
from cardkeep.storage.migrations import load as load_migrations
from tests.factories import T0, make_pi, make_si
from tests.integration.conftest import ACCOUNT


def si(id_: str = "si_sandbox_1", status: SI = SI.CREATED, **changes: Any) -> SetupIntent:
    return make_si(status, id_=id_, account_id=ACCOUNT.id, **changes)


def created_event(event_id: str, intent: SetupIntent) -> DomainEvent:
    event = change_event(event_id, None, intent)
    assert event is not None
    return event


def test_round_trip_keeps_every_field(storage: Storage) -> None:
    card = CardOnFile(
        "520000******1005", "1005", Scheme.MASTERCARD, "Credit", Expiry(12, 2029), "A B", "vt_1"
    )
    original = si(
        intended_amount=Money(1000, "GBP"),
        extras={"metadata": {"a": "1"}},
        card=card,
        description="d",
    )
    with storage.transaction(write=True) as uow:
        uow.setup_intents.add(original)
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert uow.setup_intents.get(ACCOUNT.id, original.id) == original
        assert uow.setup_intents.get("acc_other", original.id) is None
        assert uow.setup_intents.find(original.id) == original


def test_conditional_update_only_from_the_expected_status(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        uow.setup_intents.add(si())
        uow.commit()
    with storage.transaction(write=True) as uow:
        assert uow.setup_intents.update(si(status=SI.CANCELED), expected=SI.CREATED)
        uow.commit()
    with storage.transaction(write=True) as uow:
        assert not uow.setup_intents.update(si(status=SI.EXPIRED), expected=SI.CREATED)
        uow.commit()
    with storage.transaction(write=False) as uow:
        got = uow.setup_intents.get(ACCOUNT.id, "si_sandbox_1")
        assert got is not None
        assert got.status is SI.CANCELED


def test_rolled_back_change_leaves_no_row_and_no_event(storage: Storage) -> None:
    created = si()
    with pytest.raises(RuntimeError), storage.transaction(write=True) as uow:
        uow.setup_intents.add(created)
        uow.outbox.record(created_event("evt_1", created))
        raise RuntimeError("crash before commit")
    with storage.transaction(write=False) as uow:
        assert uow.setup_intents.get(ACCOUNT.id, created.id) is None
    assert _outbox_count(storage) == 0
    with storage.transaction(write=True) as uow:
        uow.setup_intents.add(created)
        uow.outbox.record(created_event("evt_2", created))
        uow.commit()
    assert _outbox_count(storage) == 1


def _outbox_count(storage: Storage) -> int:
    if isinstance(storage, MemoryStorage):
        return len(storage.tables.outbox)
    if isinstance(storage, postgres.PostgresStorage):
        with psycopg.connect(storage.url) as conn:
            row = conn.execute("SELECT count(*) FROM outbox").fetchone()
            assert row is not None
            return int(row[0])
    assert isinstance(storage, sqlite.SqliteStorage)
    with sqlite3.connect(storage.path) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def test_due_and_charging_queries(storage: Storage) -> None:
    card = CardOnFile(
        "520000******1005", "1005", Scheme.MASTERCARD, None, Expiry(1, 2027), None, "vt"
    )
    pi = make_pi(PI.CHARGING, id_="pi_1", account_id=ACCOUNT.id, setup_intent_id=None)
    with storage.transaction(write=True) as uow:
        uow.setup_intents.add(si("si_a"))
        uow.setup_intents.add(si("si_b", SI.AUTHORIZED, card=card))
        uow.payment_intents.add(pi)
        uow.payment_intents.add(replace(pi, id="pi_2", status=PI.CREATED))
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert uow.setup_intents.due(ACCOUNT.id, T0, 10) == []
        later = datetime(2027, 2, 1, tzinfo=UTC)
        assert sorted(uow.setup_intents.due(ACCOUNT.id, later, 10)) == ["si_a", "si_b"]
        assert uow.payment_intents.due(ACCOUNT.id, T0 + timedelta(days=30), 10) == ["pi_2"]
    with storage.transaction(write=True) as uow:
        later = T0 + timedelta(seconds=60)
        none_due = uow.payment_intents.lease_stuck_charges(
            lambda pi: False, later, later + timedelta(seconds=30), 10
        )
        assert none_due == []
        got = uow.payment_intents.lease_stuck_charges(
            lambda pi: True, later, later + timedelta(seconds=30), 10
        )
        assert [p.id for p in got] == ["pi_1"]
        uow.commit()


def test_leases_give_each_item_to_one_taker_until_they_expire(storage: Storage) -> None:
    pi = make_pi(PI.CHARGING, id_="pi_1", account_id=ACCOUNT.id, setup_intent_id=None)
    pi = replace(pi, claimed_at=T0)
    with storage.transaction(write=True) as uow:
        uow.payment_intents.add(pi)
        uow.commit()
    until = T0 + timedelta(seconds=30)

    def lease(now: datetime) -> tuple[list[str], list[str]]:
        with storage.transaction(write=True) as uow:
            accounts = [
                a.id for a in uow.accounts.lease_for_sweep(now, now + timedelta(seconds=5), 10)
            ]
            stuck = uow.payment_intents.lease_stuck_charges(lambda pi: True, now, until, 10)
            charges = [p.id for p in stuck]
            uow.commit()
        return accounts, charges

    assert lease(T0) == ([ACCOUNT.id], ["pi_1"])
    assert lease(T0 + timedelta(seconds=1)) == ([], [])  # both still leased
    assert lease(T0 + timedelta(seconds=5)) == ([ACCOUNT.id], [])  # the sweep lease ran out
    assert lease(T0 + timedelta(seconds=30)) == ([ACCOUNT.id], ["pi_1"])
    with storage.transaction(write=True) as uow:  # a rolled-back lease is no lease
        uow.accounts.lease_for_sweep(T0 + timedelta(seconds=40), T0 + timedelta(seconds=99), 10)
    assert lease(T0 + timedelta(seconds=41)) == (
        [ACCOUNT.id],
        ["pi_1"],
    )  # its lease (T0+30) ran out


def test_sealed_cards_put_get_forget(storage: Storage) -> None:
    sealed = SealedCard("vt_1", ACCOUNT.id, "k1", b"n" * 12, b"\x00\x01ciphertext", T0)
    with storage.transaction(write=True) as uow:
        vault_store.put(uow, sealed)
        uow.commit()
    with storage.transaction(write=True) as uow:
        assert vault_store.get(uow, "vt_1") == sealed
        assert uow.vault.holds("vt_1")
        assert vault_store.key_ids(uow) == {"k1"}
        uow.vault.forget("vt_1")
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert vault_store.get(uow, "vt_1") is None
        assert not uow.vault.holds("vt_1")


def test_a_write_that_collides_is_a_conflict_and_changes_nothing(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        uow.setup_intents.add(si("si_dup"))
        uow.commit()
    with pytest.raises(Conflict), storage.transaction(write=True) as uow:
        uow.setup_intents.add(si("si_other"))
        uow.setup_intents.add(si("si_dup"))  # the same id again
    with pytest.raises(Conflict), storage.transaction(write=True) as uow:
        uow.setup_intents.add(make_si(id_="si_orphan", account_id="acc_nobody"))
    with storage.transaction(write=False) as uow:
        assert uow.setup_intents.get(ACCOUNT.id, "si_other") is None
        assert uow.setup_intents.find("si_orphan") is None


# -- SQLite only ---------------------------------------------------------------------------------


def test_sqlite_pragmas_and_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    assert sqlite.migrate(path) == [m.version for m in load_migrations("sqlite")]
    assert sqlite.migrate(path) == []
    assert path.stat().st_mode & 0o777 == 0o600
    store = sqlite.SqliteStorage(path)
    conn = store._acquire()
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    finally:
        store._release(conn)
        store.close()


def test_sqlite_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cardkeep migrate"):
        sqlite.SqliteStorage(tmp_path / "fresh.sqlite")


def test_sqlite_write_lock_busy_gives_unavailable_after_bounded_retries(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    sqlite.migrate(path)
    store = sqlite.SqliteStorage(path, busy_timeout_ms=50, lock_attempts=3)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Unavailable), store.transaction(write=True):
            pass
        with store.transaction(write=False) as uow:  # readers are not blocked (WAL)
            assert uow.accounts.list() == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with store.transaction(write=True) as uow:
        uow.accounts.add(ACCOUNT)
        uow.commit()
    store.close()


def test_sqlite_secure_delete_leaves_no_ciphertext_behind(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    sqlite.migrate(path)
    store = sqlite.SqliteStorage(path)
    marker = b"CIPHERTEXT-MARKER-" * 8
    with store.transaction(write=True) as uow:
        uow.accounts.add(ACCOUNT)
        vault_store.put(uow, SealedCard("vt_1", ACCOUNT.id, "k1", b"n" * 12, marker, T0))
        uow.commit()
    with store.transaction(write=True) as uow:
        uow.vault.forget("vt_1")
        uow.commit()
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [p for p in tmp_path.iterdir() if p.name.startswith("db.sqlite")]
    assert all(marker not in p.read_bytes() for p in files)


# -- PostgreSQL only -----------------------------------------------------------------------------


def test_postgres_migrations_are_idempotent_and_refuse_an_unmigrated_database() -> None:
    from tests.postgres import throwaway_database

    with throwaway_database("mig") as url:
        with pytest.raises(RuntimeError, match="cardkeep migrate"):
            postgres.PostgresStorage(url)
        assert postgres.migrate(url) == [m.version for m in load_migrations("postgres")]
        assert postgres.migrate(url) == []
        store = postgres.PostgresStorage(url)
        store.ping()
        store.close()


def test_postgres_migrations_started_together_apply_once() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.postgres import throwaway_database

    with throwaway_database("mig") as url, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: postgres.migrate(url), range(4)))
    everything = [m.version for m in load_migrations("postgres")]
    assert sorted(results) == [[], [], [], everything]


def test_an_id_no_engine_can_store_names_nothing(storage: Storage) -> None:
    with storage.transaction(write=False) as uow:
        assert uow.setup_intents.get(ACCOUNT.id, "si_\x00") is None
        assert uow.setup_intents.find("si_\x00") is None
        assert uow.payment_intents.get(ACCOUNT.id, "pi_\x00") is None
        assert uow.accounts.get("acc_\x00") is None
        assert not uow.vault.holds("vt_\x00")


def test_an_idempotency_key_is_completed_once_and_only_in_a_committed_transaction(
    storage: Storage,
) -> None:
    """A recovery point completes the key in the transaction of the change: a rollback leaves it
    running; once completed, no other run (same fingerprint or not) completes it again."""
    lease = T0 + timedelta(seconds=60)
    answer = StoredResponse(200, "application/json", b"sealed answer")
    with storage.transaction(write=True) as uow:
        assert uow.idempotency.claim(ACCOUNT.id, "k", "fp", T0, lease)
        uow.commit()
    with storage.transaction(write=True) as uow:
        assert uow.idempotency.complete(ACCOUNT.id, "k", "fp", answer)  # then rolled back
    with storage.transaction(write=True) as uow:
        assert not uow.idempotency.complete(ACCOUNT.id, "k", "other", answer)
        assert not uow.idempotency.complete(ACCOUNT.id, "missing", "fp", answer)
        assert uow.idempotency.complete(ACCOUNT.id, "k", "fp", answer)
        uow.commit()
    with storage.transaction(write=True) as uow:
        assert not uow.idempotency.complete(ACCOUNT.id, "k", "fp", answer)
        found = uow.idempotency.get(ACCOUNT.id, "k")
    assert found is not None
    assert (found.done, found.leased_until, found.response) == (True, None, answer)


def test_an_accounts_origins_round_trip(storage: Storage) -> None:
    with storage.transaction(write=False) as uow:
        assert uow.accounts.origins(ACCOUNT.id) == ()
    with storage.transaction(write=True) as uow:
        uow.accounts.set_origins(ACCOUNT.id, ("https://a.example", "http://localhost:3000"))
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert uow.accounts.origins(ACCOUNT.id) == ("https://a.example", "http://localhost:3000")
        assert uow.accounts.origins("acc_nope") == ()


# -- Refunds and reversals -----------------------------------------------------------------------


def refund(
    id_: str = "rfnd_1",
    pi_id: str = "pi_1",
    *,
    seconds: int = 0,
    status: RS = RS.PENDING,
    kind: Kind = Kind.REFUND,
    **changes: Any,
) -> Refund:
    """A refund of ``pi_id`` claimed ``seconds`` after T0."""
    at = T0 + timedelta(seconds=seconds)
    base = Refund(
        id=id_,
        account_id=ACCOUNT.id,
        payment_intent_id=pi_id,
        kind=kind,
        status=status,
        amount=Money(300, "GBP"),
        created_at=at,
        updated_at=at,
        claimed_at=at,
    )
    return replace(base, **changes)


def captured_pis(storage: Storage, *ids: str) -> None:
    with storage.transaction(write=True) as uow:
        for id_ in ids:
            pi = make_pi(PI.CAPTURED, id_=id_, account_id=ACCOUNT.id, setup_intent_id=None)
            uow.payment_intents.add(replace(pi, captured_amount=1000))
        uow.commit()


def test_a_refund_round_trips_and_is_seen_by_its_account_only(storage: Storage) -> None:
    captured_pis(storage, "pi_1")
    full = refund(
        reason="Charged by mistake",
        notes="table 4",
        previous_transaction_id="prev_1",
        message=None,
        request="tok",
    )
    reversal = refund("rvs_1", kind=Kind.REVERSAL, seconds=1, amount=Money(1000, "GBP"))
    with storage.transaction(write=True) as uow:
        uow.refunds.add(full)
        uow.refunds.add(reversal)
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert uow.refunds.get(ACCOUNT.id, "rfnd_1") == full
        assert uow.refunds.get(ACCOUNT.id, "rvs_1") == reversal
        assert uow.refunds.get("acc_other", "rfnd_1") is None
        assert uow.refunds.get(ACCOUNT.id, "rfnd_nope") is None
        assert uow.refunds.get(ACCOUNT.id, "rfnd_\x00") is None
    with pytest.raises(Conflict), storage.transaction(write=True) as uow:
        uow.refunds.add(replace(full, amount=Money(1, "GBP")))  # the same id again
    with pytest.raises(Conflict), storage.transaction(write=True) as uow:
        uow.refunds.add(refund("rfnd_orphan", "pi_nope"))  # of no payment intent
    with storage.transaction(write=False) as uow:
        assert uow.refunds.get(ACCOUNT.id, "rfnd_1") == full
        assert uow.refunds.get(ACCOUNT.id, "rfnd_orphan") is None


def test_pending_lists_a_payment_intents_unsettled_movements_oldest_first(
    storage: Storage,
) -> None:
    captured_pis(storage, "pi_1", "pi_2")
    with storage.transaction(write=True) as uow:
        uow.refunds.add(refund("rfnd_late", seconds=5))
        uow.refunds.add(refund("rvs_early", seconds=1, kind=Kind.REVERSAL))
        uow.refunds.add(refund("rfnd_done", seconds=0, status=RS.SUCCEEDED))
        uow.refunds.add(refund("rfnd_declined", seconds=2, status=RS.DECLINED))
        uow.refunds.add(refund("rfnd_failed", seconds=3, status=RS.FAILED))
        uow.refunds.add(refund("rfnd_elsewhere", "pi_2", seconds=0))
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert [r.id for r in uow.refunds.pending(ACCOUNT.id, "pi_1")] == ["rvs_early", "rfnd_late"]
        assert [r.id for r in uow.refunds.pending(ACCOUNT.id, "pi_2")] == ["rfnd_elsewhere"]
        assert uow.refunds.pending("acc_other", "pi_1") == []
        assert uow.refunds.pending(ACCOUNT.id, "pi_nope") == []


def test_by_request_finds_the_newest_claim_of_a_request_that_did_not_fail(
    storage: Storage,
) -> None:
    captured_pis(storage, "pi_1", "pi_2")
    with storage.transaction(write=True) as uow:
        uow.refunds.add(refund("rfnd_a", seconds=1, status=RS.SUCCEEDED, request="tok"))
        uow.refunds.add(refund("rfnd_b", seconds=2, status=RS.FAILED, request="tok"))
        uow.refunds.add(refund("rfnd_other", seconds=3, request="another"))
        uow.refunds.add(refund("rfnd_c", "pi_2", seconds=4, request="tok"))
        uow.commit()
    with storage.transaction(write=False) as uow:
        found = uow.refunds.by_request(ACCOUNT.id, "pi_1", "tok")
        assert found is not None
        assert found.id == "rfnd_a"  # the newer one failed: a retry makes a new one
        assert uow.refunds.by_request("acc_other", "pi_1", "tok") is None
        assert uow.refunds.by_request(ACCOUNT.id, "pi_1", "nope") is None
    with storage.transaction(write=True) as uow:
        uow.refunds.add(refund("rfnd_d", seconds=5, status=RS.DECLINED, request="tok"))
        uow.commit()
    with storage.transaction(write=False) as uow:
        found = uow.refunds.by_request(ACCOUNT.id, "pi_1", "tok")
        assert found is not None
        assert found.id == "rfnd_d"
        elsewhere = uow.refunds.by_request(ACCOUNT.id, "pi_2", "tok")
        assert elsewhere is not None
        assert elsewhere.id == "rfnd_c"


def test_a_refund_is_updated_only_from_the_expected_status(storage: Storage) -> None:
    captured_pis(storage, "pi_1")
    pending = refund()
    with storage.transaction(write=True) as uow:
        uow.refunds.add(pending)
        uow.commit()
    later = T0 + timedelta(seconds=1)
    succeeded = replace(pending, status=RS.SUCCEEDED, updated_at=later, message="REFUNDED")
    with storage.transaction(write=True) as uow:
        assert uow.refunds.update(succeeded, expected=RS.PENDING)
        uow.commit()
    declined = replace(pending, status=RS.DECLINED, updated_at=later, message="Do not honour")
    with storage.transaction(write=True) as uow:
        assert not uow.refunds.update(declined, expected=RS.PENDING)  # stale: settled already
        assert not uow.refunds.update(
            replace(declined, account_id="acc_other"), expected=RS.SUCCEEDED
        )
        uow.commit()
    with storage.transaction(write=True) as uow:
        assert uow.refunds.update(replace(succeeded, notes="n"), expected=RS.SUCCEEDED)
    # rolled back
    with storage.transaction(write=False) as uow:
        assert uow.refunds.get(ACCOUNT.id, pending.id) == succeeded
        assert uow.refunds.pending(ACCOUNT.id, "pi_1") == []


def test_lease_pending_gives_each_due_movement_to_one_caller_until_it_expires(
    storage: Storage,
) -> None:
    captured_pis(storage, "pi_1", "pi_2")
    with storage.transaction(write=True) as uow:
        uow.refunds.add(refund("rfnd_1"))
        uow.refunds.add(refund("rvs_2", "pi_2", kind=Kind.REVERSAL))
        uow.refunds.add(refund("rfnd_young", seconds=50))
        uow.refunds.add(refund("rfnd_done", status=RS.SUCCEEDED))
        uow.commit()

    def old(r: Refund) -> bool:
        return r.claimed_at < T0 + timedelta(seconds=10)

    def lease(now: datetime, until: datetime, due: Any = old) -> list[str]:
        with storage.transaction(write=True) as uow:
            got = sorted(r.id for r in uow.refunds.lease_pending(due, now, until, 10))
            uow.commit()
        return got

    start = T0 + timedelta(seconds=60)
    assert lease(start, start, lambda r: False) == []  # nothing due: nothing leased
    assert lease(start, start + timedelta(seconds=30)) == ["rfnd_1", "rvs_2"]
    assert lease(start + timedelta(seconds=1), start + timedelta(seconds=99)) == []  # leased
    everything = lease(start + timedelta(seconds=2), start + timedelta(seconds=99), lambda r: True)
    assert everything == ["rfnd_young"]  # the young one, once due; never a settled one
    with storage.transaction(write=True) as uow:  # a rolled-back lease is no lease
        uow.refunds.lease_pending(old, start + timedelta(seconds=30), start + timedelta(days=1), 10)
    with storage.transaction(write=True) as uow:  # settled meanwhile: never leased again
        settled = replace(refund("rvs_2", "pi_2", kind=Kind.REVERSAL), status=RS.SUCCEEDED)
        assert uow.refunds.update(settled, expected=RS.PENDING)
        uow.commit()
    assert lease(start + timedelta(seconds=30), start + timedelta(seconds=60)) == ["rfnd_1"]


def test_get_for_update_reads_a_payment_intent_after_the_holder_of_its_lock_commits(
    storage: Storage,
) -> None:
    captured_pis(storage, "pi_1")
    with storage.transaction(write=False) as uow:
        plain = uow.payment_intents.get(ACCOUNT.id, "pi_1")
    with storage.transaction(write=True) as uow:
        assert uow.payment_intents.get_for_update(ACCOUNT.id, "pi_1") == plain
        assert uow.payment_intents.get_for_update("acc_other", "pi_1") is None
        assert uow.payment_intents.get_for_update(ACCOUNT.id, "pi_nope") is None
        assert uow.payment_intents.get_for_update(ACCOUNT.id, "pi_\x00") is None
    assert plain is not None
    locked, seen = threading.Event(), []

    def second() -> None:
        locked.wait(5)
        with storage.transaction(write=True) as uow:
            got = uow.payment_intents.get_for_update(ACCOUNT.id, "pi_1")
            seen.append(got.refunded_amount if got else None)
            uow.commit()

    thread = threading.Thread(target=second)
    thread.start()
    with storage.transaction(write=True) as uow:
        held = uow.payment_intents.get_for_update(ACCOUNT.id, "pi_1")
        assert held is not None
        locked.set()
        time.sleep(0.3)  # the second caller is waiting for this transaction meanwhile
        assert seen == []
        assert uow.payment_intents.update(replace(held, refunded_amount=300), expected=PI.CAPTURED)
        uow.commit()
    thread.join(10)
    assert seen == [300]


def test_api_keys_have_ids_and_revoked_ones_authenticate_nothing(storage: Storage) -> None:
    later = T0 + timedelta(seconds=1)
    with storage.transaction(write=True) as uow:
        uow.accounts.add_key("key_1", "hash1", ACCOUNT.id, T0)
        uow.accounts.add_key("key_2", "hash2", ACCOUNT.id, later)
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert uow.accounts.keys(ACCOUNT.id) == (
            ApiKey("key_1", ACCOUNT.id, T0),
            ApiKey("key_2", ACCOUNT.id, later),
        )
        assert uow.accounts.keys("acc_nope") == ()
        assert uow.accounts.key("key_2") == ApiKey("key_2", ACCOUNT.id, later)
        assert uow.accounts.key_of_hash("hash1") == ApiKey("key_1", ACCOUNT.id, T0)
        assert uow.accounts.key("key_nope") is None
        assert uow.accounts.key("key_\x00") is None
        assert uow.accounts.key_of_hash("nope") is None
        assert uow.accounts.by_key_hash("hash1") == ("hash1", ACCOUNT)
    revoked_at = T0 + timedelta(minutes=5)
    with storage.transaction(write=True) as uow:
        uow.accounts.revoke_key("key_1", revoked_at)
        uow.commit()
    with storage.transaction(write=True) as uow:
        uow.accounts.revoke_key("key_1", revoked_at + timedelta(hours=1))  # keeps the first
        uow.accounts.revoke_key("key_nope", revoked_at)  # names nothing: changes nothing
        uow.commit()
    with storage.transaction(write=True) as uow:
        uow.accounts.revoke_key("key_2", revoked_at)  # rolled back: still active
    with storage.transaction(write=False) as uow:
        assert uow.accounts.by_key_hash("hash1") is None
        assert uow.accounts.by_key_hash("hash2") == ("hash2", ACCOUNT)
        assert uow.accounts.key_of_hash("hash1") == ApiKey("key_1", ACCOUNT.id, T0, revoked_at)
        assert [(k.id, k.revoked_at) for k in uow.accounts.keys(ACCOUNT.id)] == [
            ("key_1", revoked_at),
            ("key_2", None),
        ]


def test_an_api_key_id_or_hash_taken_already_is_a_conflict(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        uow.accounts.add_key("key_1", "hash1", ACCOUNT.id, T0)
        uow.commit()
    for key_id, key_hash, account_id in (
        ("key_1", "hash2", ACCOUNT.id),
        ("key_2", "hash1", ACCOUNT.id),
        ("key_3", "hash3", "acc_nobody"),
    ):
        with pytest.raises(Conflict), storage.transaction(write=True) as uow:
            uow.accounts.add_key(key_id, key_hash, account_id, T0)
    with storage.transaction(write=False) as uow:
        assert uow.accounts.keys(ACCOUNT.id) == (ApiKey("key_1", ACCOUNT.id, T0),)
