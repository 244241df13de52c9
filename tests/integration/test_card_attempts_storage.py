"""The card attempts of the card-testing limits, on every storage (SQLite, PostgreSQL, memory):
counts in a sliding window per account and per setup intent, distinct fingerprints, settling,
pruning, rollback, and the account hold that orders concurrent reservations."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from cardkeep.service.ports import CardAttempt, CardResult, Storage
from tests.factories import T0
from tests.integration.conftest import ACCOUNT

P, A, D, E = CardResult.PENDING, CardResult.APPROVED, CardResult.DECLINED, CardResult.EXPIRED
FAILED = (D, E, P)


def attempt(
    id_: str, seconds: int, outcome: CardResult = D, si: str | None = None, fp: str = "f1"
) -> CardAttempt:
    return CardAttempt(id_, ACCOUNT.id, si, fp, outcome, T0 + timedelta(seconds=seconds))


def add(storage: Storage, *attempts: CardAttempt) -> None:
    with storage.transaction(write=True) as uow:
        for a in attempts:
            uow.card_attempts.add(a)
        uow.commit()


def test_nth_newest_counts_one_scope_some_outcomes_after_a_time(storage: Storage) -> None:
    add(
        storage,
        attempt("a1", 0),
        attempt("a2", 10, E),
        attempt("a3", 20, A),
        attempt("a4", 30, P, si="si_1"),
        attempt("a5", 40, D, si="si_2"),
    )
    with storage.transaction(write=False) as uow:
        repo = uow.card_attempts
        at = [T0 + timedelta(seconds=s) for s in (0, 10, 20, 30, 40)]
        assert repo.nth_newest(ACCOUNT.id, None, FAILED, T0 - timedelta(1), 1) == at[4]
        assert repo.nth_newest(ACCOUNT.id, None, FAILED, T0 - timedelta(1), 4) == at[0]
        assert repo.nth_newest(ACCOUNT.id, None, FAILED, T0 - timedelta(1), 5) is None
        assert repo.nth_newest(ACCOUNT.id, None, FAILED, T0, 4) is None  # strictly after
        assert repo.nth_newest(ACCOUNT.id, None, FAILED, T0, 3) == at[1]
        assert repo.nth_newest(ACCOUNT.id, None, (A, P), T0 - timedelta(1), 2) == at[2]
        assert repo.nth_newest(ACCOUNT.id, "si_1", FAILED, T0 - timedelta(1), 1) == at[3]
        assert repo.nth_newest(ACCOUNT.id, "si_1", FAILED, T0 - timedelta(1), 2) is None
        assert repo.nth_newest("acc_other", None, FAILED, T0 - timedelta(1), 1) is None


def test_settle_delete_prune_and_rollback(storage: Storage) -> None:
    add(storage, attempt("a1", 0, P), attempt("a2", 100, P), attempt("a3", 200, P))
    since = T0 - timedelta(seconds=1)
    with storage.transaction(write=True) as uow:
        uow.card_attempts.settle("a1", A)
        uow.card_attempts.delete("a2")
        uow.card_attempts.add(attempt("a4", 300))
        # not committed: rolled back
    with storage.transaction(write=False) as uow:
        assert uow.card_attempts.nth_newest(ACCOUNT.id, None, (P,), since, 3) is not None
    with storage.transaction(write=True) as uow:
        uow.card_attempts.settle("a1", A)
        uow.card_attempts.delete("a2")
        uow.card_attempts.settle("nope", A)  # nothing to settle
        uow.commit()
    with storage.transaction(write=False) as uow:
        repo = uow.card_attempts
        assert repo.nth_newest(ACCOUNT.id, None, (A,), since, 1) == T0
        assert repo.nth_newest(ACCOUNT.id, None, (P,), since, 1) == T0 + timedelta(seconds=200)
        assert repo.nth_newest(ACCOUNT.id, None, (P,), since, 2) is None
    with storage.transaction(write=True) as uow:
        assert uow.card_attempts.prune(T0 + timedelta(seconds=200)) == 1  # a1; a3 stays
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert uow.card_attempts.nth_newest(ACCOUNT.id, None, (A, P), since, 2) is None


def test_cards_are_distinct_fingerprints_of_one_setup_intent_with_their_newest_try(
    storage: Storage,
) -> None:
    add(
        storage,
        attempt("a1", 0, si="si_1", fp="f1"),
        attempt("a2", 10, si="si_1", fp="f2"),
        attempt("a3", 20, A, si="si_1", fp="f1"),
        attempt("a4", 30, si="si_2", fp="f3"),
        attempt("a5", 40, fp="f4"),
    )
    with storage.transaction(write=False) as uow:
        repo = uow.card_attempts
        assert repo.cards("si_1", T0 - timedelta(1)) == {
            "f1": T0 + timedelta(seconds=20),
            "f2": T0 + timedelta(seconds=10),
        }
        assert repo.cards("si_1", T0 + timedelta(seconds=10)) == {"f1": T0 + timedelta(seconds=20)}
        assert repo.cards("si_3", T0 - timedelta(1)) == {}


def test_hold_orders_the_reservations_of_one_account(storage: Storage) -> None:
    """A second holder of the account counts only after the first one commits (PostgreSQL: it
    waits for the row lock; SQLite and memory: write transactions are serialised)."""
    since = T0 - timedelta(seconds=1)
    held, seen = threading.Event(), []

    def second() -> None:
        held.wait(5)
        with storage.transaction(write=True) as uow:
            uow.card_attempts.hold(ACCOUNT.id)
            seen.append(uow.card_attempts.nth_newest(ACCOUNT.id, None, FAILED, since, 1))
            uow.commit()

    thread = threading.Thread(target=second)
    thread.start()
    with storage.transaction(write=True) as uow:
        uow.card_attempts.hold(ACCOUNT.id)
        held.set()
        time.sleep(0.3)  # the second holder is waiting meanwhile
        assert seen == []
        uow.card_attempts.add(attempt("a1", 0, P))
        uow.commit()
    thread.join(10)
    assert seen == [T0]
