"""The one gate through which intents are written: insert, conditional save, due changes first.

Every write of a setup or payment intent goes through ``Changes``: a first save records the
intent's ``*.created`` event, a later save is a conditional write (the stored status must still be
the one the change started from) that records ``*.status_updated`` when ``domain.events`` says so.

``decide`` runs a use case's decision in one write transaction that rolls back on any exception.
Time-driven changes (expiry) the decision finds due are never committed as a side effect of a
refusal: the decision raises ``DueFirst``, the due change is committed in its own transaction, and
the decision runs again on the updated intent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from cardkeep.domain import payment_intent as pim
from cardkeep.domain import setup_intent as sim
from cardkeep.domain.errors import Busy, ChargeInProgress, Unavailable
from cardkeep.domain.events import Intent, change_event
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.service.ports import Storage, UnitOfWork

T = TypeVar("T")
IntentT = TypeVar("IntentT", SetupIntent, PaymentIntent)

# A decision meets at most a payment intent's and its setup intent's due changes.
MAX_DUE_ROUNDS = 4
# A decision the database refused for contention runs again this many times, then answers 503.
MAX_BUSY_RETRIES = 3


class DueFirst(Exception):
    """A time-driven change is due on ``old``: commit ``new`` first, then decide again."""

    def __init__(self, old: Intent, new: Intent) -> None:
        super().__init__(f"{old.id} has a due change")
        self.old = old
        self.new = new


def due_change(intent: IntentT, now: datetime) -> IntentT | None:
    """The intent after the time-driven transition the account clock says is due, if any."""
    if isinstance(intent, SetupIntent):
        si_event = sim.due_event(intent, now)
        return None if si_event is None else sim.transition(intent, si_event, now)
    pi_event = pim.due_event(intent, now)
    return None if pi_event is None else pim.transition(intent, pi_event, now)


class Changes:
    def __init__(self, storage: Storage, event_id: Callable[[], str]) -> None:
        self._storage = storage
        self._event_id = event_id

    def insert(self, uow: UnitOfWork, new: Intent) -> None:
        """First save of an intent (possibly a draft that went through transitions): exactly one
        ``*.created`` event, carrying the status it is saved with."""
        if isinstance(new, SetupIntent):
            uow.setup_intents.add(new)
        else:
            uow.payment_intents.add(new)
        self._record(uow, None, new)

    def save(self, uow: UnitOfWork, old: Intent, new: Intent) -> None:
        """Conditional write of ``new`` over ``old``; a lost race changes nothing and raises."""
        if not self._update(uow, old, new):
            raise ChargeInProgress(
                "The object changed while this request ran (a charge may be in progress); retry."
            )
        self._record(uow, old, new)

    def forget_card(self, uow: UnitOfWork, old: SetupIntent, new: SetupIntent) -> None:
        """Delete the vault record of a card whose setup intent no longer holds it."""
        if old.vault_token is not None and new.vault_token is None:
            uow.vault.forget(old.vault_token)

    def check_due(self, intent: IntentT, now: datetime) -> IntentT:
        """``intent`` unchanged if nothing is due; else raise DueFirst (see ``decide``)."""
        changed = due_change(intent, now)
        if changed is not None:
            raise DueFirst(intent, changed)
        return intent

    def apply_due(self, uow: UnitOfWork, old: Intent, new: Intent) -> bool:
        """Commit-ready write of a due change; False if the intent moved meanwhile."""
        if not self._update(uow, old, new):
            return False
        self._record(uow, old, new)
        if isinstance(old, SetupIntent) and isinstance(new, SetupIntent):
            self.forget_card(uow, old, new)
        return True

    def decide(self, attempt: Callable[[UnitOfWork], T]) -> T:
        """Run ``attempt`` in a write transaction and commit what it wrote; any exception rolls it
        back. Due changes it reports (``DueFirst``) are committed on their own first."""
        due_rounds = busy = 0
        while True:
            try:
                with self._storage.transaction(write=True) as uow:
                    result = attempt(uow)
                    uow.commit()
                    return result
            except DueFirst as due:
                due_rounds += 1
                if due_rounds == MAX_DUE_ROUNDS:
                    raise Unavailable(
                        "The object kept changing while this request ran; retry."
                    ) from None
                with self._storage.transaction(write=True) as uow:
                    if self.apply_due(uow, due.old, due.new):
                        uow.commit()
            except Busy:  # contention (deadlock, lock timeout): the whole decision runs again
                busy += 1
                if busy > MAX_BUSY_RETRIES:
                    raise

    @staticmethod
    def _update(uow: UnitOfWork, old: Intent, new: Intent) -> bool:
        if isinstance(old, SetupIntent) and isinstance(new, SetupIntent):
            return uow.setup_intents.update(new, expected=old.status)
        if isinstance(old, PaymentIntent) and isinstance(new, PaymentIntent):
            return uow.payment_intents.update(new, expected=old.status)
        raise TypeError(f"cannot save a {type(new).__name__} over a {type(old).__name__}")

    def _record(self, uow: UnitOfWork, old: Intent | None, new: Intent) -> None:
        event = change_event(self._event_id(), old, new)
        if event is not None:
            uow.outbox.record(event)
