"""The sweeper: persists time-driven transitions nobody has read yet, re-drives unknown charges,
and writes the authentication failures counted in minutes that have closed (``service.audit``).

Every change it makes is the same conditional write, with the same event, that a read would make,
so any number of sweepers (and readers) can run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cardkeep.domain.account import Account
from cardkeep.domain.errors import DomainError
from cardkeep.service.audit import Audit
from cardkeep.service.card_limits import CardLimits
from cardkeep.service.context import Context
from cardkeep.service.idempotency import Idempotency
from cardkeep.service.payment_intents import PaymentIntents
from cardkeep.service.refunds import Refunds
from cardkeep.service.setup_intents import SetupIntents

# How often a sweeper prunes Idempotency-Key records and card attempts: each prune is a write
# transaction, and what it removes (records past 24 hours, attempts past the card-testing window)
# can wait a minute, while the sweep itself runs every few seconds in every process.
PRUNE_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class SweepReport:
    setup_intents: int
    payment_intents: int
    recovered_charges: int
    recovered_refunds: int
    # Accounts whose sweep failed this run (the others were swept all the same).
    failed_accounts: tuple[str, ...] = ()


class Sweeper:
    def __init__(
        self,
        ctx: Context,
        sis: SetupIntents,
        pis: PaymentIntents,
        refunds: Refunds,
        idempotency: Idempotency,
        audit: Audit,
        card_limits: CardLimits,
    ) -> None:
        self._ctx = ctx
        self._sis = sis
        self._pis = pis
        self._refunds = refunds
        self._idempotency = idempotency
        self._audit = audit
        self._card_limits = card_limits
        self._next_prune: datetime | None = None

    def _prune(self, now: datetime) -> None:
        """Idempotency-Key records older than their 24 hours, and card attempts that have left
        the card-testing window: on the first run, then at most once per ``PRUNE_EVERY``."""
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        self._idempotency.prune()
        self._card_limits.prune()

    def run_once(self) -> SweepReport:
        """Sweep the accounts whose sweep lease has expired, each on its own: one account that
        fails (bad data, a clock out of range) never stops the others, nor the recovery of
        unknown-outcome charges. Any number of workers run this: the lease (one sweep interval,
        real time) gives each account to one of them per interval."""
        ctx = self._ctx
        now = ctx.clock.now()
        with ctx.storage.transaction(write=True) as uow:
            accounts = uow.accounts.lease_for_sweep(
                now, now + ctx.policy.sweep_interval, ctx.policy.sweep_accounts
            )
            uow.commit()
        n_si = n_pi = 0
        failed: list[str] = []
        for account in accounts:
            try:
                swept_si, swept_pi = self._sweep(account)
            except Exception:  # isolated: reported, and retried on the next run
                failed.append(account.id)
                continue
            n_si += swept_si
            n_pi += swept_pi
        self._prune(now)
        charges = self._pis.recover()
        report = SweepReport(n_si, n_pi, charges, self._refunds.recover(), tuple(failed))
        self._audit.flush_failures()  # last: a failed write keeps its counts for the next run
        return report

    def _sweep(self, account: Account) -> tuple[int, int]:
        ctx = self._ctx
        now = ctx.now(account)
        with ctx.storage.transaction(write=False) as uow:
            si_ids = uow.setup_intents.due(account.id, now, ctx.policy.sweep_batch)
            pi_ids = uow.payment_intents.due(account.id, now, ctx.policy.sweep_batch)
        n_si = n_pi = 0
        for si_id in si_ids:
            try:
                self._sis.get(account, si_id)
                n_si += 1
            except DomainError:  # lost a race with a request: that request applied it
                continue
        for pi_id in pi_ids:
            try:
                self._pis.expire_due(account, pi_id)
                n_pi += 1
            except DomainError:
                continue
        return n_si, n_pi
