"""The retention purge (``cardkeep purge``): scrubs what final intents no longer need and deletes
vault rows that no live setup intent holds.

It works in batches, each in its own short write transaction: the intents of a batch are read
locked (``RetentionRepo``) and written back with the usual conditional write, so a purge never
overwrites a change made meanwhile (a refund settling on a Captured payment intent), and an
intent another transaction holds is left for the next run. Age is measured on each account's
clock, like every other time of its records (``updated_at`` is written on it).

Vault rows: the card leaves the vault in the transaction that ends its setup intent
(``Changes.forget_card``), so a row no ``Authorized``/``ChargeHeld`` setup intent holds is a
leftover (a crash before that rule, an old data directory). The tokens are listed first, then
the live setup intents read: a token listed was written in the same transaction as its setup
intent, so the scan sees that intent, and a setup intent that no longer holds a card never holds
that one again. What no live intent held during the scan is deleted, whatever its age.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from cardkeep.domain.account import Account
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.retention import PURGEABLE_PI, PURGEABLE_SI, purged_pi, purged_si
from cardkeep.domain.setup_intent import HOLDS_CARD, SetupIntent
from cardkeep.service.ports import Clock, Storage, UnitOfWork

BATCH = 200
IntentT = TypeVar("IntentT", SetupIntent, PaymentIntent)


@dataclass(frozen=True)
class PurgeReport:
    setup_intents: int  # scrubbed (or, in a dry run, to be scrubbed)
    payment_intents: int
    vault_cards: int  # deleted (or to be deleted)


def _clock(
    uow: UnitOfWork, accounts: dict[str, Account], account_id: str, real_now: datetime
) -> datetime:
    """The account's clock at ``real_now`` (an intent's account is never deleted)."""
    account = accounts.get(account_id)
    if account is None:
        account = uow.accounts.get(account_id)
        assert account is not None, account_id
        accounts[account_id] = account
    return account.now(real_now)


class Retention:
    def __init__(self, storage: Storage, clock: Clock, *, batch: int = BATCH) -> None:
        self._storage = storage
        self._clock = clock
        self._batch = batch

    def purge(self, older_than: timedelta, *, dry_run: bool = False) -> PurgeReport:
        """Purge what changed ``older_than`` ago or earlier; ``dry_run`` counts and writes
        nothing."""
        real_now = self._clock.now()
        accounts: dict[str, Account] = {}  # read as their intents come up, once each
        return PurgeReport(
            self._setup_intents(accounts, real_now, older_than, dry_run),
            self._payment_intents(accounts, real_now, older_than, dry_run),
            self._vault(dry_run),
        )

    def _setup_intents(
        self, accounts: dict[str, Account], real_now: datetime, age: timedelta, dry_run: bool
    ) -> int:
        return self._intents(
            lambda uow, after: uow.retention.final_setup_intents(PURGEABLE_SI, after, self._batch),
            purged_si,
            lambda uow, new, old: uow.setup_intents.update(new, expected=old.status),
            accounts,
            real_now,
            age,
            dry_run,
        )

    def _payment_intents(
        self, accounts: dict[str, Account], real_now: datetime, age: timedelta, dry_run: bool
    ) -> int:
        return self._intents(
            lambda uow, after: uow.retention.final_payment_intents(
                PURGEABLE_PI, after, self._batch
            ),
            purged_pi,
            lambda uow, new, old: uow.payment_intents.update(new, expected=old.status),
            accounts,
            real_now,
            age,
            dry_run,
        )

    def _intents(
        self,
        batch_after: Callable[[UnitOfWork, str], Sequence[IntentT]],
        purged: Callable[[IntentT, datetime, timedelta], IntentT | None],
        update: Callable[[UnitOfWork, IntentT, IntentT], bool],
        accounts: dict[str, Account],
        real_now: datetime,
        age: timedelta,
        dry_run: bool,
    ) -> int:
        """Purge one kind of intent, batch by batch (ids ascending), each batch one write
        transaction of conditional writes; how many were (or would be) purged."""
        done, after = 0, ""
        while True:
            with self._storage.transaction(write=True) as uow:
                batch = batch_after(uow, after)
                for intent in batch:
                    now = _clock(uow, accounts, intent.account_id, real_now)
                    new = purged(intent, now, age)
                    if new is not None and (dry_run or update(uow, new, intent)):
                        done += 1
                if not dry_run:
                    uow.commit()
            if len(batch) < self._batch:
                return done
            after = batch[-1].id

    def _vault(self, dry_run: bool) -> int:
        tokens: list[str] = []
        while True:  # first the tokens ...
            with self._storage.transaction(write=False) as uow:
                page = uow.retention.vault_tokens(tokens[-1] if tokens else "", self._batch)
            tokens.extend(page)
            if len(page) < self._batch:
                break
        held: set[str] = set()
        after = ""
        while True:  # ... then the setup intents that hold a card
            with self._storage.transaction(write=False) as uow:
                live = uow.retention.vault_tokens_held(HOLDS_CARD, after, self._batch)
            held.update(token for _, token in live if token is not None)
            if len(live) < self._batch:
                break
            after = live[-1][0]
        orphans = [token for token in tokens if token not in held]
        if not dry_run:
            for start in range(0, len(orphans), self._batch):
                with self._storage.transaction(write=True) as uow:
                    for token in orphans[start : start + self._batch]:
                        uow.vault.forget(token)
                    uow.commit()
        return len(orphans)
