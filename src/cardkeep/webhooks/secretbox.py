"""Webhook secrets sealed at rest: AES-256-GCM under a key kept outside the database (the
``webhook.key`` file of the data directory, or ``CARDKEEP_WEBHOOK_KEY``), bound to the secret's
id so a sealed value cannot be moved to another secret."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12


class AesSecretBox:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, secret_id: str, value: str) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, value.encode("utf-8"), _aad(secret_id))

    def open(self, secret_id: str, sealed: bytes) -> str:
        plain = self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], _aad(secret_id))
        return plain.decode("utf-8")


def _aad(secret_id: str) -> bytes:
    return b"cardkeep-webhook-secret-v1\0" + secret_id.encode()
