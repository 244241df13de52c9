"""The sandbox acquirer's ledger, kept in the service database through a port: the first answer to
each charge attempt by its idempotency key. Every process (and, with PostgreSQL, every host) sees
the same ledger, and it survives restarts, so a re-send after a crash gets the first answer, and an
attempt the acquirer never received is processed exactly once, when it is first asked about.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from cardkeep.service.ports import ChargeOutcome, ChargeResult, Clock, Storage

# idempotency key, result, message, auth code, network transaction id, created at
LedgerRow = tuple[str, str, str, str | None, str | None, datetime]


@runtime_checkable
class LedgerRows(Protocol):
    """What a storage adapter's ``uow.sandbox_ledger`` provides."""

    def first(self, row: LedgerRow) -> LedgerRow: ...
    def get(self, key: str) -> LedgerRow | None: ...


class Ledger(Protocol):
    """The port the sandbox acquirer keeps its answers through."""

    def first_answer(
        self, key: str, outcome: ChargeOutcome, network_transaction_id: str | None
    ) -> ChargeOutcome:
        """Record ``outcome`` for ``key`` unless an answer is recorded already; the one that
        stands (the first)."""
        ...

    def answer(self, key: str) -> ChargeOutcome | None: ...


class StorageLedger:
    """The ledger as a table of the service database, each write in its own short transaction."""

    def __init__(self, storage: Storage, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock

    @staticmethod
    def _rows(uow: object) -> LedgerRows:
        rows = getattr(uow, "sandbox_ledger", None)
        if not isinstance(rows, LedgerRows):
            raise TypeError(f"{type(uow).__name__} keeps no sandbox ledger")
        return rows

    def first_answer(
        self, key: str, outcome: ChargeOutcome, network_transaction_id: str | None
    ) -> ChargeOutcome:
        row = (
            key,
            outcome.result.value,
            outcome.message,
            outcome.auth_code,
            network_transaction_id,
            self._clock.now(),
        )
        with self._storage.transaction(write=True) as uow:
            stood = self._rows(uow).first(row)
            uow.commit()
        return _outcome(stood)

    def answer(self, key: str) -> ChargeOutcome | None:
        with self._storage.transaction(write=False) as uow:
            row = self._rows(uow).get(key)
        return None if row is None else _outcome(row)


def _outcome(row: LedgerRow) -> ChargeOutcome:
    return ChargeOutcome(ChargeResult(row[1]), row[2], row[3])
