"""Online rotation of the vault's keys, while the service keeps serving and charging.

- ``rotate_kek(new)``: makes ``new`` the keyring's current KEK (in the file; an inline keyring is
  the operator's to change), then rewraps every DEK wrapped under another KEK, in batches, each
  batch its own short transaction of conditional writes (``… WHERE id = ? AND kek_id = ?``).
  Running it again after a crash rewraps what is left.
- ``rotate_deks()``: for every account that holds cards or a DEK, a new current DEK (the old one
  becomes ``previous``: it still opens its cards), then the account's cards not under it are
  re-sealed under it in batches, each written only if the card is still under the key it was read
  under (``… WHERE token = ? AND key_id = ?``): a card charged, forgotten or re-sealed meanwhile is
  skipped. A ``previous`` DEK that no card uses any more becomes ``retired``. Cards sealed under
  the legacy key are re-sealed the same way. Running it again finishes what a crash left (under
  yet another DEK).
- ``retire(id)``: a KEK (removed from the keyring file), a DEK (its wrapped key deleted) or the
  legacy key (``vault.key`` deleted), each refused while anything still uses it.

No transaction is held across a batch or a pause, and no lock beyond a batch's own rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cardkeep.cde import vault_store
from cardkeep.cde.keys import RELOAD_EVERY, KeyringSource, VaultKeyError
from cardkeep.cde.vault import DEK_PREFIX, Vault, VaultError
from cardkeep.cde.vault_store import SealedCard
from cardkeep.service.ports import Storage


class RotationError(RuntimeError):
    """A rotation or retirement was refused; the message says why and what to do."""


@dataclass(frozen=True)
class KeyUse:
    """One line of ``cardkeep keys list``."""

    key_id: str
    kind: str  # kek, dek, legacy
    status: str
    used_by: str


@dataclass
class Report:
    keys_rewrapped: int = 0
    cards_resealed: int = 0
    cards_skipped: int = 0
    cards_unreadable: int = 0
    deks_made: int = 0
    deks_retired: int = 0
    made_current: bool = False


class Rotation:
    def __init__(
        self,
        storage: Storage,
        vault: Vault,
        *,
        legacy_file: Path | None = None,
        batch: int = 100,
        pause: float = 0.0,
        progress: Callable[[str], None] = lambda line: None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._storage = storage
        self._vault = vault
        self._legacy_file = legacy_file
        self._batch = batch
        self._pause = pause
        self._progress = progress
        self._sleep = sleep
        self._now = now

    @property
    def _keyring(self) -> KeyringSource:
        return self._vault.keyring

    def _between(self) -> None:
        if self._pause:
            self._sleep(self._pause)

    # -- listing ------------------------------------------------------------------------------

    def list(self) -> list[KeyUse]:
        keyring = self._keyring.get()
        with self._storage.transaction(write=False) as uow:
            rows = vault_store.rows(uow)
            cards = rows.card_counts()
            keks = rows.kek_counts()
            deks = []
            after = ""
            while batch := rows.deks(after, 1000):
                deks += [vault_store.to_dek(row) for row in batch]
                after = batch[-1][0]
        found = [
            KeyUse(
                kek_id,
                "kek",
                "current" if kek_id == keyring.current else "available",
                f"{keks.get(kek_id, 0)} deks",
            )
            for kek_id in sorted(keyring.keys)
        ]
        found += [
            KeyUse(kek_id, "kek", "missing from the keyring", f"{count} deks")
            for kek_id, count in sorted(keks.items())
            if kek_id not in keyring.keys
        ]
        found += [
            KeyUse(d.id, "dek", f"{d.status.value} {d.account_id} {d.kek_id}", f"{n} cards")
            for d in deks
            for n in [cards.get(d.id, 0)]
        ]
        legacy = self._vault.legacy_key_id
        for key_id, count in sorted(cards.items()):
            if not key_id.startswith(DEK_PREFIX):
                state = "loaded" if key_id == legacy else "not loaded"
                found.append(KeyUse(key_id, "legacy", state, f"{count} cards"))
        if legacy is not None and legacy not in cards:
            found.append(KeyUse(legacy, "legacy", "loaded", "0 cards"))
        return found

    # -- KEKs ---------------------------------------------------------------------------------

    def rotate_kek(self, new_id: str) -> Report:
        keyring = self._keyring.get()
        if new_id not in keyring.keys:
            raise RotationError(
                f"the keyring holds no key {new_id}: add it to the keyring first (ids: "
                f"{', '.join(sorted(keyring.keys))})"
            )
        report = Report()
        made_at = time.monotonic()
        report.made_current = self._keyring.set_current(new_id)
        if report.made_current:
            self._progress(f"{new_id} is now current in {self._keyring.path}")
        self._rewrap_pass(new_id, report)
        if report.made_current:
            # A process may wrap one more DEK under the old KEK until it notices the file changed
            # (it looks once a second): one more pass once they all have.
            self._sleep(max(0.0, made_at + RELOAD_EVERY + 0.5 - time.monotonic()))
            self._rewrap_pass(new_id, report)
        return report

    def _rewrap_pass(self, new_id: str, report: Report) -> None:
        after = ""
        while True:
            with self._storage.transaction(write=False) as uow:
                batch = vault_store.rows(uow).deks_not_under(new_id, after, self._batch)
            if not batch:
                return
            rewrapped = [self._vault.rewrap(vault_store.to_dek(row), new_id) for row in batch]
            done = 0
            with self._storage.transaction(write=True) as uow:
                rows = vault_store.rows(uow)
                for old, new in zip(batch, rewrapped, strict=True):
                    done += rows.dek_rewrap(new.id, old[2], new_id, new.wrapped)
                uow.commit()
            report.keys_rewrapped += done
            self._progress(f"rewrapped {done} data-encryption keys under {new_id}")
            after = batch[-1][0]
            self._between()

    # -- DEKs ---------------------------------------------------------------------------------

    def rotate_deks(self) -> Report:
        report = Report()
        after = ""
        while True:
            with self._storage.transaction(write=False) as uow:
                accounts = vault_store.rows(uow).dek_accounts(after, self._batch)
            if not accounts:
                return report
            for account_id in accounts:
                self._rotate_account(account_id, report)
            after = accounts[-1]

    def _rotate_account(self, account_id: str, report: Report) -> None:
        dek = self._vault.new_dek(account_id, self._now())
        with self._storage.transaction(write=True) as uow:
            vault_store.rows(uow).dek_replace_current(account_id, vault_store.dek_row(dek))
            uow.commit()
        report.deks_made += 1
        self._progress(f"{account_id}: new current data-encryption key {dek.id}")
        cursor = ""
        while True:
            with self._storage.transaction(write=False) as uow:
                cards = vault_store.cards_not_under(uow, account_id, dek.id, cursor, self._batch)
            if not cards:
                break
            resealed: list[tuple[str, SealedCard]] = []
            for card in cards:
                try:
                    pan = self._vault.open(card)
                except VaultError:
                    report.cards_unreadable += 1
                    continue
                resealed.append(
                    (card.key_id, self._vault.seal_under(dek, card.token, pan, card.created_at))
                )
            done = 0
            with self._storage.transaction(write=True) as uow:
                for old_key_id, card in resealed:
                    done += vault_store.reseal(uow, old_key_id, card)
                uow.commit()
            report.cards_resealed += done
            report.cards_skipped += len(resealed) - done
            self._progress(f"{account_id}: re-sealed {done} cards under {dek.id}")
            cursor = cards[-1].token
            self._between()
        with self._storage.transaction(write=True) as uow:
            retired = vault_store.rows(uow).dek_retire_unused(account_id)
            uow.commit()
        report.deks_retired += len(retired)
        if retired:
            self._progress(f"{account_id}: retired {', '.join(retired)}")

    # -- retiring -----------------------------------------------------------------------------

    def retire(self, key_id: str) -> str:
        """Retire a KEK, a DEK or the legacy key; what was done, or ``RotationError``."""
        keyring = self._keyring.get()
        with self._storage.transaction(write=False) as uow:
            rows = vault_store.rows(uow)
            cards = rows.card_counts().get(key_id, 0)
            deks = rows.kek_counts().get(key_id, 0)
            dek = vault_store.get_dek(uow, key_id) if key_id.startswith(DEK_PREFIX) else None
        if dek is not None:
            return self._retire_dek(key_id, dek.status.value, cards)
        if key_id in keyring.keys or deks:
            return self._retire_kek(key_id, keyring.current, deks)
        if key_id == self._vault.legacy_key_id or cards:
            return self._retire_legacy(key_id, cards)
        raise RotationError(f"no key {key_id} in the keyring or the database")

    def _retire_dek(self, key_id: str, status: str, cards: int) -> str:
        if status == "current":
            raise RotationError(
                f"{key_id} is its account's current data-encryption key: run "
                "`cardkeep keys rotate --deks` first"
            )
        if cards:
            raise RotationError(
                f"{cards} cards are still sealed under {key_id}: run `cardkeep keys rotate --deks`"
            )
        with self._storage.transaction(write=True) as uow:
            deleted = vault_store.rows(uow).dek_delete_unused(key_id)
            uow.commit()
        if not deleted:
            raise RotationError(f"{key_id} came into use meanwhile: not retired")
        return f"{key_id} retired: its wrapped key is deleted"

    def _retire_kek(self, key_id: str, current: str, deks: int) -> str:
        if key_id == current:
            raise RotationError(
                f"{key_id} is the keyring's current KEK: run `cardkeep keys rotate --kek NEW_ID`"
            )
        if deks:
            raise RotationError(
                f"{deks} data-encryption keys are still wrapped under {key_id}: run "
                f"`cardkeep keys rotate --kek {current}`"
            )
        try:
            removed = self._keyring.remove(key_id)
        except VaultKeyError as exc:
            raise RotationError(str(exc)) from exc
        if removed:
            return f"{key_id} retired: removed from {self._keyring.path}"
        return f"{key_id} is no longer used: remove it from CARDKEEP_KEYRING_JSON"

    def _retire_legacy(self, key_id: str, cards: int) -> str:
        if cards:
            raise RotationError(
                f"{cards} cards are still sealed under the legacy key {key_id}: run "
                "`cardkeep keys rotate --deks`"
            )
        if self._legacy_file is not None and self._legacy_file.exists():
            self._legacy_file.unlink()
            return f"{key_id} retired: {self._legacy_file} deleted (unset CARDKEEP_VAULT_KEY too)"
        return f"{key_id} is no longer used: unset CARDKEEP_VAULT_KEY"
