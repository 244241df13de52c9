"""Card-testing defence: limits on card attempts, counted in the database so every process and
host shares them, checked before the acquirer is asked.

An attempt is **reserved** before the acquirer call: one write transaction locks the account
(``CardAttemptRepo.hold``), counts the attempts in the sliding window (``Policy.card_window``, real
time, so a sandbox clock moved forward does not empty it) and adds the new one as ``pending``, or
refuses with ``RateLimited`` (429, Retry-After: when the attempt that decides the refusal leaves
the window). A pending attempt counts as a failure and as an approval until it is settled, so
concurrent attempts can never pass a limit between them. The outcome is **settled** in the
transaction that records the card's outcome on its setup intent (or on its own when that one
fails); an attempt the acquirer could not answer is **released** (deleted): it tried no card.

The limits (0 turns one off):

- failed attempts per account (``card_failed_per_account``);
- failed attempts per setup intent paid through a client session secret, whatever secrets it was
  given (``card_failed_per_secret``);
- distinct cards tried per such setup intent (``card_cards_per_secret``; trying a card again is
  not a new card);
- approved card entries per account (``card_approved_per_account``, off by default).

A card is known only by its fingerprint, an HMAC computed in ``cde/`` under a key kept outside the
database; the service never sees the card number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import assert_never

from cardkeep.domain.account import Account
from cardkeep.domain.audit import Action, Outcome, account_actor, page_actor
from cardkeep.domain.errors import RateLimited
from cardkeep.service import audit
from cardkeep.service.context import Context
from cardkeep.service.ports import CardAttempt, CardAttemptRepo, CardResult, UnitOfWork
from cardkeep.service.setup_intents import (
    CardApproved,
    CardDeclined,
    CardOutcome,
    CardPastExpiry,
)

FAILED = (CardResult.DECLINED, CardResult.EXPIRED, CardResult.PENDING)
APPROVED = (CardResult.APPROVED, CardResult.PENDING)


def result_of(outcome: CardOutcome) -> CardResult:
    match outcome:
        case CardApproved():
            return CardResult.APPROVED
        case CardDeclined():
            return CardResult.DECLINED
        case CardPastExpiry():
            return CardResult.EXPIRED
        case _:
            assert_never(outcome)


class CardLimits:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def reserve(self, account: Account, fingerprint: str, setup_intent_id: str | None) -> str:
        """Count a card attempt before the acquirer is asked: its id, or ``RateLimited``.

        ``setup_intent_id`` names the setup intent of a client session secret (the hosted page's
        card endpoint); None for an attempt made with the account's key."""
        now = self._ctx.clock.now()
        attempt = CardAttempt(
            self._ctx.ids.uuid4(),
            account.id,
            setup_intent_id,
            fingerprint,
            CardResult.PENDING,
            now,
        )
        with self._ctx.storage.transaction(write=True) as uow:
            repo = uow.card_attempts
            repo.hold(account.id)
            refusal = self._refusal(repo, attempt)
            if refusal is None:
                repo.add(attempt)
                uow.commit()
                return attempt.id
            detail, until = refusal
            audit.record(
                self._ctx,
                uow,
                actor=page_actor(setup_intent_id) if setup_intent_id else account_actor(account.id),
                action=Action.CARD_RATE_LIMITED,
                subject=setup_intent_id or account.id,
                outcome=Outcome.DENIED,
                account_id=account.id,
                detail={"reason": detail},
            )
            uow.commit()  # the refusal is recorded; nothing else was written
        raise RateLimited(
            f"{detail} Try again later.", max(1, math.ceil((until - now).total_seconds()))
        )

    def _refusal(self, repo: CardAttemptRepo, attempt: CardAttempt) -> tuple[str, datetime] | None:
        """Why the attempt is refused and until when (real time), or None."""
        policy = self._ctx.policy
        since = attempt.at - policy.card_window

        def full(
            si_id: str | None, outcomes: tuple[CardResult, ...], limit: int
        ) -> datetime | None:
            if limit <= 0:
                return None
            decisive = repo.nth_newest(attempt.account_id, si_id, outcomes, since, limit)
            return None if decisive is None else decisive + policy.card_window

        until = full(None, FAILED, policy.card_failed_per_account)
        if until is not None:
            return "Too many failed card attempts for this account.", until
        until = full(None, APPROVED, policy.card_approved_per_account)
        if until is not None:
            return "Too many card entries for this account.", until
        si_id = attempt.setup_intent_id
        if si_id is None:
            return None
        until = full(si_id, FAILED, policy.card_failed_per_secret)
        if until is not None:
            return "Too many failed card attempts for this setup intent.", until
        until = self._cards_full(repo, si_id, attempt.fingerprint, since)
        if until is not None:
            return "Too many different cards tried for this setup intent.", until
        return None

    def _cards_full(
        self, repo: CardAttemptRepo, si_id: str, fingerprint: str, since: datetime
    ) -> datetime | None:
        """A new card for a setup intent that has had its share of distinct cards: until the
        card whose newest attempt is the ``limit``-th newest leaves the window."""
        limit = self._ctx.policy.card_cards_per_secret
        if limit <= 0:
            return None
        tried = repo.cards(si_id, since)
        if fingerprint in tried or len(tried) < limit:
            return None
        decisive = sorted(tried.values(), reverse=True)[limit - 1]
        return decisive + self._ctx.policy.card_window

    def settle(self, attempt_id: str, outcome: CardOutcome) -> Callable[[UnitOfWork], None]:
        """The step that records the outcome inside the transaction that records it on the
        setup intent."""
        result = result_of(outcome)

        def step(uow: UnitOfWork) -> None:
            uow.card_attempts.settle(attempt_id, result)

        return step

    def settle_alone(self, attempt_id: str, outcome: CardOutcome) -> None:
        """Record the outcome in its own transaction (the setup intent's was not committed)."""
        with self._ctx.storage.transaction(write=True) as uow:
            self.settle(attempt_id, outcome)(uow)
            uow.commit()

    def release(self, attempt_id: str) -> None:
        """Forget an attempt the acquirer never answered: it tried no card."""
        with self._ctx.storage.transaction(write=True) as uow:
            uow.card_attempts.delete(attempt_id)
            uow.commit()

    def prune(self) -> int:
        """Delete the attempts that have left the window (the sweeper calls this)."""
        before = self._ctx.clock.now() - self._ctx.policy.card_window
        with self._ctx.storage.transaction(write=True) as uow:
            pruned = uow.card_attempts.prune(before)
            uow.commit()
        return pruned
