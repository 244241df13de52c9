"""The money-movement primitive: claim → call with no transaction open → settle → recover.

Every operation that moves money (a charge today; refunds and reversal next) is a ``Movement``:
1. **claim**: one write transaction of conditional writes reserves the object (or answers at once,
   when nothing needs sending); due changes are committed first (``Changes.decide``);
2. **send**: the external call, with no transaction open, under an idempotency key stored with the
   claim; an exception or an unknown outcome leaves the claim in place and raises;
3. **settle**: one write transaction applies a known outcome, only if the claim is still current;
4. **recover**: for claims left with an unknown outcome, ``resend`` asks again with the same key
   (the far side deduplicates) and settles. Money moves once whether or not the first call arrived.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

from cardkeep.service.changes import Changes
from cardkeep.service.ports import Clock, Storage, UnitOfWork

C = TypeVar("C")  # what a claim carries to the call and to settlement
O = TypeVar("O")  # the far side's outcome  # noqa: E741
A = TypeVar("A")  # the answer the caller gets


@dataclass(frozen=True)
class Claimed(Generic[C]):
    claim: C


class Movement(ABC, Generic[C, O, A]):
    """One kind of money movement: how to call the far side and how to settle its answer."""

    @abstractmethod
    def send(self, claim: C) -> O:
        """The first call for this claim."""

    @abstractmethod
    def resend(self, claim: C) -> O:
        """Ask again with the same key: never moves money a second time."""

    @abstractmethod
    def known(self, outcome: O) -> bool:
        """False when the outcome is unknown (timeout, lost answer)."""

    @abstractmethod
    def unknown(self, claim: C) -> Exception:
        """What the caller gets while the outcome is unknown (a 503 with Retry-After)."""

    @abstractmethod
    def settle(self, uow: UnitOfWork, claim: C, outcome: O) -> A:
        """Apply a known outcome inside ``uow``; a claim settled meanwhile answers from storage."""


def within_timeout(clock: Clock, timeout: timedelta, call: Callable[[], O], late: O) -> O:
    """``call()``'s answer, or ``late`` (an unknown outcome) when it came after the call's hard
    timeout: never settled from, recovery asks again with the same key and gets the same answer."""
    started = clock.now()
    outcome = call()
    return late if clock.now() - started > timeout else outcome


def move(
    changes: Changes,
    storage: Storage,
    movement: Movement[C, O, A],
    claim: Callable[[UnitOfWork], Claimed[C] | A],
) -> A:
    """Claim, call with no transaction open, settle."""
    first = changes.decide(claim)
    if not isinstance(first, Claimed):
        return first  # answered without a call (e.g. the card expired by the clock)
    try:
        outcome = movement.send(first.claim)
    except Exception as exc:  # the far side's state is unknown: never assume either way
        raise movement.unknown(first.claim) from exc
    if not movement.known(outcome):
        raise movement.unknown(first.claim)
    return settle(storage, movement, first.claim, outcome)


def settle(storage: Storage, movement: Movement[C, O, A], claim: C, outcome: O) -> A:
    with storage.transaction(write=True) as uow:
        answer = movement.settle(uow, claim, outcome)
        uow.commit()
    return answer


def recover(storage: Storage, movement: Movement[C, O, A], claims: Iterable[C]) -> int:
    """Re-send each claim with its own key and settle the known outcomes; how many settled."""
    settled = 0
    for claim in claims:
        try:
            outcome = movement.resend(claim)
        except Exception:  # noqa: S112 - still unknown; the next recovery asks again
            continue
        if not movement.known(outcome):
            continue
        try:
            settle(storage, movement, claim, outcome)
        except Exception:  # noqa: S112 - this claim stays; the others are still settled
            continue
        settled += 1
    return settled
