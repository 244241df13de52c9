"""Idempotency-Key (CONTRACT §6): at most one run of a request per key, and the same answer after.

``begin`` writes a running record with a lease (real time) before the request runs, or says why the
request must not run: its stored answer is replayed, the key was used for another request, or the
first request with the key is still running. ``finish`` keeps a final answer (200-499 but 409 and
429) or forgets the key after anything else (5xx, 409, 429), so a retry runs again. A lease left by
a process that crashed runs out and the retry takes over. Records are kept 24 hours (real time) and
pruned by the sweeper. The record holds a keyed fingerprint of the request and a sealed answer,
both made by the web layer: never card data or a usable secret in clear.

A use case that commits a change (a create, a secret refresh, a clock move) is given a
``RecoveryPoint``: it writes the request's answer onto the key **in the transaction of the change**
(``keep``), so the change and the completed key commit together. A process that dies after that
commit leaves a completed key, and the retry is answered from it; one that dies before leaves
neither, and the retry runs. A run whose key another run has completed meanwhile (its lease ran
out while it ran) rolls its change back instead (409 ``idempotency_in_progress``): one change per
key, whatever the timing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TypeVar

from cardkeep.domain.errors import IdempotencyInProgress
from cardkeep.service.ports import Clock, Storage, StoredResponse, UnitOfWork

T = TypeVar("T")

# Writes the answer of the running request onto its key, in the use case's own transaction,
# from what the use case made (the result it returns).
RecoveryPoint = Callable[[UnitOfWork, T], None]


def kept(point: RecoveryPoint[T] | None, uow: UnitOfWork, result: T) -> T:
    """``result``, its answer written onto the request's key first when it carries one."""
    if point is not None:
        point(uow, result)
    return result


RETENTION = timedelta(hours=24)
LEASE = timedelta(seconds=60)


class Begin(StrEnum):
    RUN = "run"  # a new key (or a lapsed one): run the request
    REPLAY = "replay"  # the stored answer of the same request
    MISMATCH = "mismatch"  # the key was used for a different request
    IN_PROGRESS = "in_progress"  # the first request with this key is still running


@dataclass(frozen=True)
class Started:
    outcome: Begin
    response: StoredResponse | None = None


def keeps(status: int) -> bool:
    """Whether a final answer with this status is kept for replay. A 422 (a mismatch the use case
    found: the key names another request whose answer was not kept) is not: keeping it would bind
    the key to this other request, and refuse that first request's own retry."""
    return 200 <= status < 500 and status not in (409, 422, 429)


class Idempotency:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        lease: timedelta = LEASE,
        retention: timedelta = RETENTION,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._lease = lease
        self._retention = retention

    def begin(self, scope: str, key: str, fingerprint: str) -> Started:
        now = self._clock.now()
        with self._storage.transaction(write=True) as uow:
            repo = uow.idempotency
            if repo.claim(scope, key, fingerprint, now, now + self._lease):
                uow.commit()
                return Started(Begin.RUN)
            found = repo.get(scope, key)
            expired = now - self._retention
            if found is None or found.created_at <= expired:  # pruned meanwhile, or past retention
                if repo.take_over(scope, key, fingerprint, now, now + self._lease, expired):
                    uow.commit()
                    return Started(Begin.RUN)
                return Started(Begin.IN_PROGRESS)
            if found.fingerprint != fingerprint:
                return Started(Begin.MISMATCH)
            if found.done:
                return Started(Begin.REPLAY, found.response)
            if found.leased_until is not None and found.leased_until > now:
                return Started(Begin.IN_PROGRESS)
            if repo.take_over(scope, key, fingerprint, now, now + self._lease, expired):
                uow.commit()  # the first request's process died: this one runs instead
                return Started(Begin.RUN)
            return Started(Begin.IN_PROGRESS)

    def finish(self, scope: str, key: str, fingerprint: str, response: StoredResponse) -> None:
        """Keep the final answer, or forget the key when the answer is not one to replay."""
        with self._storage.transaction(write=True) as uow:
            if keeps(response.status):
                uow.idempotency.complete(scope, key, fingerprint, response)
            else:
                uow.idempotency.release(scope, key, fingerprint)
            uow.commit()

    @staticmethod
    def keep(
        uow: UnitOfWork, scope: str, key: str, fingerprint: str, response: StoredResponse
    ) -> None:
        """Complete the key with ``response`` inside the caller's transaction (a recovery point).

        Raises, so the caller's change rolls back, if the key is no longer running: another run
        of the same request took it over after a lease ran out and has answered it already."""
        if not uow.idempotency.complete(scope, key, fingerprint, response):
            raise IdempotencyInProgress(
                "Another run of this request has answered this Idempotency-Key; retry to get "
                "its answer."
            )

    def prune(self) -> int:
        with self._storage.transaction(write=True) as uow:
            pruned = uow.idempotency.prune(self._clock.now() - self._retention)
            uow.commit()
        return pruned
