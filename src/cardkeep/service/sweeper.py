"""The sweeper: persists time-driven transitions nobody has read yet and re-drives unknown charges.

Every change it makes is the same conditional write, with the same event, that a read would make,
so any number of sweepers (and readers) can run at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardkeep.domain.errors import DomainError
from cardkeep.service.context import Context
from cardkeep.service.payment_intents import PaymentIntents
from cardkeep.service.setup_intents import SetupIntents


@dataclass(frozen=True)
class SweepReport:
    setup_intents: int
    payment_intents: int
    recovered_charges: int


class Sweeper:
    def __init__(self, ctx: Context, sis: SetupIntents, pis: PaymentIntents) -> None:
        self._ctx = ctx
        self._sis = sis
        self._pis = pis

    def run_once(self) -> SweepReport:
        ctx = self._ctx
        n_si = n_pi = 0
        with ctx.storage.transaction(write=False) as uow:
            accounts = uow.accounts.list()
        for account in accounts:
            now = ctx.now(account)
            with ctx.storage.transaction(write=False) as uow:
                si_ids = uow.setup_intents.due(account.id, now, ctx.policy.sweep_batch)
                pi_ids = uow.payment_intents.due(account.id, now, ctx.policy.sweep_batch)
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
        return SweepReport(n_si, n_pi, self._pis.recover())
