"""The vault: envelope encryption of card numbers.

- A **card** is sealed with AES-256-GCM under its account's current data-encryption key (DEK),
  with the token and account id bound in as associated data, so a sealed card cannot be moved to
  another token or account. ``vault_cards.key_id`` names the DEK.
- A **DEK** is 32 random bytes with a random id (``dek_…``), one current per account, stored in
  ``vault_deks`` only wrapped: AES-256-GCM under a key-encryption key (KEK) of the keyring, with
  the DEK id, the account id and the KEK id as associated data. The keyring never enters the
  database.
- A card sealed by an earlier release under the single **legacy key** (``vault.key``) still opens
  while that key is loaded; ``cardkeep keys rotate --deks`` re-seals it under a DEK.

Unwrapped DEKs are kept in memory by id (a DEK's bytes never change: a rotation of KEKs rewraps
them, a rotation of DEKs makes new ones). Never logs, prints or returns a plaintext PAN or key
except to its caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardkeep.cde import vault_store
from cardkeep.cde.keys import KeyringSource, VaultKey
from cardkeep.cde.pan import CardNumber
from cardkeep.cde.vault_store import Dek, DekStatus, SealedCard
from cardkeep.domain.errors import Conflict
from cardkeep.domain.ids import IdFactory, Prefix, b64url
from cardkeep.keyfiles import KEY_BYTES
from cardkeep.service.ports import Storage, UnitOfWork

__all__ = ["DEK_PREFIX", "SealedCard", "Vault", "VaultError"]

DEK_PREFIX = "dek_"
NONCE_BYTES = 12
CACHE_SIZE = 10_000


class VaultError(Exception):
    """A sealed card could not be opened (unknown key, KEK not loaded, tampered ciphertext)."""


def _card_aad(token: str, account_id: str) -> bytes:
    return f"cardkeep-vault-v1|{token}|{account_id}".encode()


def _dek_aad(dek_id: str, account_id: str, kek_id: str) -> bytes:
    return f"cardkeep-dek-v1|{dek_id}|{account_id}|{kek_id}".encode()


class Vault:
    def __init__(
        self,
        keyring: KeyringSource,
        storage: Storage,
        legacy: VaultKey | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._keyring = keyring
        self._storage = storage
        self._legacy = legacy
        self._legacy_aead = None if legacy is None else AESGCM(legacy.material)
        self._random_bytes = random_bytes
        self._ids = IdFactory(random_bytes)
        self._deks: dict[str, AESGCM] = {}

    @property
    def keyring(self) -> KeyringSource:
        return self._keyring

    @property
    def legacy_key_id(self) -> str | None:
        return None if self._legacy is None else self._legacy.key_id

    def reload_keyring(self) -> None:
        self._keyring.reload()

    # -- DEKs ---------------------------------------------------------------------------------

    def new_dek(self, account_id: str, now: datetime) -> Dek:
        """A new random DEK for the account, wrapped under the keyring's current KEK."""
        dek_id = DEK_PREFIX + b64url(self._random_bytes(16))
        material = self._random_bytes(KEY_BYTES)
        return self._wrap(dek_id, account_id, material, DekStatus.CURRENT, now)

    def _wrap(
        self, dek_id: str, account_id: str, material: bytes, status: DekStatus, now: datetime
    ) -> Dek:
        kek = self._keyring.get().current_key
        nonce = self._random_bytes(NONCE_BYTES)
        wrapped = nonce + AESGCM(kek.material).encrypt(
            nonce, material, _dek_aad(dek_id, account_id, kek.key_id)
        )
        return Dek(dek_id, account_id, kek.key_id, wrapped, status, now)

    def _unwrap(self, dek: Dek) -> bytes:
        kek = self._keyring.get().get(dek.kek_id)
        if kek is None:
            raise VaultError(f"the key {dek.id} is wrapped under {dek.kek_id}, not in the keyring")
        try:
            return AESGCM(kek).decrypt(
                dek.wrapped[:NONCE_BYTES],
                dek.wrapped[NONCE_BYTES:],
                _dek_aad(dek.id, dek.account_id, dek.kek_id),
            )
        except InvalidTag as exc:
            raise VaultError(f"the key {dek.id} failed authentication") from exc

    def rewrap(self, dek: Dek, kek_id: str) -> Dek:
        """The same DEK wrapped under the KEK ``kek_id`` (which must be in the keyring)."""
        keyring = self._keyring.get()
        kek = keyring.get(kek_id)
        if kek is None:
            raise VaultError(f"the keyring holds no key {kek_id}")
        material = self._unwrap(dek)
        nonce = self._random_bytes(NONCE_BYTES)
        wrapped = nonce + AESGCM(kek).encrypt(
            nonce, material, _dek_aad(dek.id, dek.account_id, kek_id)
        )
        return Dek(dek.id, dek.account_id, kek_id, wrapped, dek.status, dek.created_at)

    def _aead(self, dek: Dek) -> AESGCM:
        aead = self._deks.get(dek.id)
        if aead is None:
            aead = AESGCM(self._unwrap(dek))
            if len(self._deks) >= CACHE_SIZE:
                self._deks.clear()
            self._deks[dek.id] = aead
        return aead

    def ensure_dek(self, account_id: str, now: datetime) -> None:
        """Give the account a current DEK if it has none (its own short write transaction; of
        two processes doing it at once, one DEK is kept)."""
        with self._storage.transaction(write=False) as uow:
            if vault_store.current_dek(uow, account_id) is not None:
                return
        try:
            with self._storage.transaction(write=True) as uow:
                if vault_store.current_dek(uow, account_id) is None:
                    vault_store.add_dek(uow, self.new_dek(account_id, now))
                    uow.commit()
        except Conflict:
            return  # another process made it first

    # -- cards --------------------------------------------------------------------------------

    def new_token(self) -> str:
        return self._ids.new(Prefix.VAULT_TOKEN)

    def seal(
        self, uow: UnitOfWork, account_id: str, token: str, pan: CardNumber, now: datetime
    ) -> SealedCard:
        """Seal under the account's current DEK, read (and held) in the transaction ``uow`` that
        stores the card (``ensure_dek`` first)."""
        for _ in range(3):
            # A rotation that replaced the key while this read waited for its lock hides the old
            # row and not yet the new one (PostgreSQL, READ COMMITTED): read again, a new snapshot.
            dek = vault_store.current_dek(uow, account_id, lock=True)
            if dek is not None:
                break
        else:
            raise VaultError(f"the account {account_id} has no data-encryption key")
        return self.seal_under(dek, token, pan, now)

    def seal_under(self, dek: Dek, token: str, pan: CardNumber, now: datetime) -> SealedCard:
        nonce = self._random_bytes(NONCE_BYTES)
        ciphertext = self._aead(dek).encrypt(
            nonce, pan.digits.encode("ascii"), _card_aad(token, dek.account_id)
        )
        return SealedCard(token, dek.account_id, dek.id, nonce, ciphertext, now)

    def seal_legacy(self, account_id: str, pan: CardNumber, now: datetime) -> SealedCard:
        """Seal under the legacy key, as releases before envelope encryption did (tests build
        such a vault with it)."""
        if self._legacy is None or self._legacy_aead is None:
            raise VaultError("no legacy vault key is loaded")
        token = self.new_token()
        nonce = self._random_bytes(NONCE_BYTES)
        ct = self._legacy_aead.encrypt(
            nonce, pan.digits.encode("ascii"), _card_aad(token, account_id)
        )
        return SealedCard(token, account_id, self._legacy.key_id, nonce, ct, now)

    def open(self, sealed: SealedCard) -> CardNumber:
        aead = self._aead_for(sealed.key_id)
        try:
            plain = aead.decrypt(
                sealed.nonce, sealed.ciphertext, _card_aad(sealed.token, sealed.account_id)
            )
        except InvalidTag as exc:
            raise VaultError("the sealed card failed authentication") from exc
        return CardNumber(plain.decode("ascii"))

    def _aead_for(self, key_id: str) -> AESGCM:
        legacy, legacy_aead = self._legacy, self._legacy_aead
        if legacy is not None and legacy_aead is not None and key_id == legacy.key_id:
            return legacy_aead
        cached = self._deks.get(key_id)
        if cached is not None:
            return cached
        if not key_id.startswith(DEK_PREFIX):
            raise VaultError(f"the card was sealed under key {key_id}, which is not loaded")
        with self._storage.transaction(write=False) as uow:
            dek = vault_store.get_dek(uow, key_id)
        if dek is None:
            raise VaultError(f"the card was sealed under key {key_id}, which is not stored")
        return self._aead(dek)
