"""The vault repository: sealed cards in the service database, owned by ``cde/``.

The unit of work exposes the ``vault_cards`` table as ``uow.vault``: the service sees it through
its token-only port (``holds``, ``forget``), and this module sees the row access below, so a sealed
card is written in the same transaction as the setup intent that holds it and deleted in the one
that ends it. The ciphertext format (``SealedCard``) is known here and in ``vault`` only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from cardkeep.cde.vault import SealedCard
from cardkeep.service.ports import UnitOfWork

# token, account id, key id, nonce, ciphertext, created at
VaultRow = tuple[str, str, str, bytes, bytes, datetime]


@runtime_checkable
class VaultRows(Protocol):
    """What a storage adapter's ``uow.vault`` provides beyond the service's port."""

    def put(self, row: VaultRow) -> None: ...

    def get(self, token: str) -> VaultRow | None: ...
    def key_ids(self) -> set[str]: ...


def _rows(uow: UnitOfWork) -> VaultRows:
    rows = uow.vault
    if not isinstance(rows, VaultRows):
        raise TypeError(f"{type(rows).__name__} does not store sealed cards")
    return rows


def put(uow: UnitOfWork, card: SealedCard) -> None:
    _rows(uow).put(
        (card.token, card.account_id, card.key_id, card.nonce, card.ciphertext, card.created_at)
    )


def get(uow: UnitOfWork, token: str) -> SealedCard | None:
    row = _rows(uow).get(token)
    return None if row is None else SealedCard(*row)


def key_ids(uow: UnitOfWork) -> set[str]:
    """The ids of every key that sealed a stored card."""
    return _rows(uow).key_ids()
