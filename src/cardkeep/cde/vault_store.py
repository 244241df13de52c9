"""The vault repository: sealed cards and wrapped data-encryption keys in the service database,
owned by ``cde/``.

The unit of work exposes the ``vault_cards`` and ``vault_deks`` tables as ``uow.vault``: the
service sees it through its token-only port (``holds``, ``forget``), and this module sees the row
access below, so a sealed card is written in the same transaction as the setup intent that holds
it and deleted in the one that ends it. The ciphertext format (``SealedCard``) and the wrapped key
(``Dek``) are known here and in ``vault`` and ``rotation`` only; storage keeps them as opaque
columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from cardkeep.service.ports import UnitOfWork

# token, account id, key id, nonce, ciphertext, created at
VaultRow = tuple[str, str, str, bytes, bytes, datetime]
# id, account id, KEK id, wrapped key, status, created at
DekRow = tuple[str, str, str, bytes, str, datetime]


class DekStatus(StrEnum):
    CURRENT = "current"  # seals the account's new cards (one per account)
    PREVIOUS = "previous"  # replaced by a newer one; still opens the cards sealed under it
    RETIRED = "retired"  # no card uses it any more


@dataclass(frozen=True, slots=True)
class SealedCard:
    """A PAN as AES-256-GCM ciphertext with its key id; opaque outside the vault."""

    token: str
    account_id: str
    key_id: str
    nonce: bytes
    ciphertext: bytes
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Dek:
    """A data-encryption key as stored: wrapped by the KEK ``kek_id``; opaque outside the vault."""

    id: str
    account_id: str
    kek_id: str
    wrapped: bytes
    status: DekStatus
    created_at: datetime

    def __repr__(self) -> str:
        return f"Dek({self.id}, {self.account_id}, kek={self.kek_id}, {self.status.value})"


@runtime_checkable
class VaultRows(Protocol):
    """What a storage adapter's ``uow.vault`` provides beyond the service's port."""

    def put(self, row: VaultRow) -> None: ...
    def get(self, token: str) -> VaultRow | None: ...
    def key_ids(self) -> set[str]: ...
    def card_counts(self) -> dict[str, int]: ...
    def cards_not_under(
        self, account_id: str, key_id: str, after: str, limit: int
    ) -> list[VaultRow]: ...
    def reseal(self, token: str, old_key_id: str, row: VaultRow) -> bool: ...
    def kek_counts(self) -> dict[str, int]: ...

    def dek_add(self, row: DekRow) -> None: ...
    def dek_get(self, dek_id: str) -> DekRow | None: ...
    def dek_current(self, account_id: str, *, lock: bool) -> DekRow | None: ...
    def dek_replace_current(self, account_id: str, row: DekRow) -> None: ...
    def deks(self, after: str, limit: int) -> list[DekRow]: ...
    def deks_not_under(self, kek_id: str, after: str, limit: int) -> list[DekRow]: ...
    def dek_rewrap(self, dek_id: str, old_kek_id: str, kek_id: str, wrapped: bytes) -> bool: ...
    def dek_retire_unused(self, account_id: str) -> list[str]: ...
    def dek_delete_unused(self, dek_id: str) -> bool: ...
    def dek_accounts(self, after: str, limit: int) -> list[str]: ...


def _rows(uow: UnitOfWork) -> VaultRows:
    rows = uow.vault
    if not isinstance(rows, VaultRows):
        raise TypeError(f"{type(rows).__name__} does not store sealed cards")
    return rows


def rows(uow: UnitOfWork) -> VaultRows:
    """The row access of ``uow``'s vault tables (for ``rotation``)."""
    return _rows(uow)


def _row(card: SealedCard) -> VaultRow:
    return (card.token, card.account_id, card.key_id, card.nonce, card.ciphertext, card.created_at)


def dek_row(dek: Dek) -> DekRow:
    return (dek.id, dek.account_id, dek.kek_id, dek.wrapped, dek.status.value, dek.created_at)


def to_dek(row: DekRow) -> Dek:
    return Dek(row[0], row[1], row[2], row[3], DekStatus(row[4]), row[5])


def put(uow: UnitOfWork, card: SealedCard) -> None:
    _rows(uow).put(_row(card))


def get(uow: UnitOfWork, token: str) -> SealedCard | None:
    row = _rows(uow).get(token)
    return None if row is None else SealedCard(*row)


def key_ids(uow: UnitOfWork) -> set[str]:
    """The ids of every key that sealed a stored card."""
    return _rows(uow).key_ids()


def reseal(uow: UnitOfWork, old_key_id: str, card: SealedCard) -> bool:
    """Replace the sealed card only if it is still stored under ``old_key_id`` (a card forgotten
    or re-sealed meanwhile is left alone); whether it was replaced."""
    return _rows(uow).reseal(card.token, old_key_id, _row(card))


def cards_not_under(
    uow: UnitOfWork, account_id: str, key_id: str, after: str, limit: int
) -> list[SealedCard]:
    """The account's cards sealed under another key than ``key_id``, by token after ``after``."""
    return [SealedCard(*r) for r in _rows(uow).cards_not_under(account_id, key_id, after, limit)]


def current_dek(uow: UnitOfWork, account_id: str, *, lock: bool = False) -> Dek | None:
    """The account's current DEK; ``lock`` holds it (shared) until the transaction ends, so a
    rotation cannot replace it before a card sealed under it is stored."""
    row = _rows(uow).dek_current(account_id, lock=lock)
    return None if row is None else to_dek(row)


def get_dek(uow: UnitOfWork, dek_id: str) -> Dek | None:
    row = _rows(uow).dek_get(dek_id)
    return None if row is None else to_dek(row)


def add_dek(uow: UnitOfWork, dek: Dek) -> None:
    _rows(uow).dek_add(dek_row(dek))
