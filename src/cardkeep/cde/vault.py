"""The vault: seals a PAN with AES-256-GCM under the current key and opens it again for a charge.

The token and account id are bound in as associated data, so a sealed card cannot be moved to
another token or account. Never logs, prints or returns a plaintext PAN except to its caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardkeep.cde.keys import VaultKey
from cardkeep.domain.card import CardNumber
from cardkeep.service.ports import SealedCard


class VaultError(Exception):
    """A sealed card could not be opened (wrong key, tampered ciphertext)."""


class Vault:
    def __init__(self, key: VaultKey, new_token: Callable[[], str]) -> None:
        self._key = key
        self._aead = AESGCM(key.material)
        self._new_token = new_token

    @staticmethod
    def _aad(token: str, account_id: str) -> bytes:
        return f"cardkeep-vault-v1|{token}|{account_id}".encode()

    def seal(self, account_id: str, pan: CardNumber, now: datetime) -> SealedCard:
        token = self._new_token()
        nonce = os.urandom(12)
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
