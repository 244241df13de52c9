"""The vault: seals a PAN with AES-256-GCM under the current key and opens it again for a charge.

The token and account id are bound in as associated data, so a sealed card cannot be moved to
another token or account. Never logs, prints or returns a plaintext PAN except to its caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardkeep.cde.keys import VaultKey
from cardkeep.cde.pan import CardNumber
from cardkeep.domain.ids import IdFactory, Prefix


class VaultError(Exception):
    """A sealed card could not be opened (wrong key, tampered ciphertext)."""


@dataclass(frozen=True, slots=True)
class SealedCard:
    """A PAN as AES-256-GCM ciphertext with its key id; opaque outside the vault."""

    token: str
    account_id: str
    key_id: str
    nonce: bytes
    ciphertext: bytes
    created_at: datetime


class Vault:
    def __init__(self, key: VaultKey, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._key = key
        self._aead = AESGCM(key.material)
        self._random_bytes = random_bytes
        self._ids = IdFactory(random_bytes)

    @property
    def key_id(self) -> str:
        return self._key.key_id

    @staticmethod
    def _aad(token: str, account_id: str) -> bytes:
        return f"cardkeep-vault-v1|{token}|{account_id}".encode()

    def seal(self, account_id: str, pan: CardNumber, now: datetime) -> SealedCard:
        token = self._ids.new(Prefix.VAULT_TOKEN)
        nonce = self._random_bytes(12)
        ciphertext = self._aead.encrypt(
            nonce, pan.digits.encode("ascii"), self._aad(token, account_id)
        )
        return SealedCard(token, account_id, self._key.key_id, nonce, ciphertext, now)

    def open(self, sealed: SealedCard) -> CardNumber:
        if sealed.key_id != self._key.key_id:
            raise VaultError(f"the card was sealed under key {sealed.key_id}, which is not loaded")
        try:
            plain = self._aead.decrypt(
                sealed.nonce, sealed.ciphertext, self._aad(sealed.token, sealed.account_id)
            )
        except InvalidTag as exc:
            raise VaultError("the sealed card failed authentication") from exc
        return CardNumber(plain.decode("ascii"))
