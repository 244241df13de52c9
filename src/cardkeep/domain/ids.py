"""Prefixed random ids (``si_sandbox_…``, ``pi_…``, ``evt_…``, ``key_…``). The random bytes are
passed in."""

from __future__ import annotations

import base64
from collections.abc import Callable
from enum import StrEnum

RANDOM_BYTES = 16
MAX_PATH_ID_LENGTH = 50


class Prefix(StrEnum):
    SETUP_INTENT = "si"
    PAYMENT_INTENT = "pi"
    EVENT = "evt"
    ACCOUNT = "acc"
    VAULT_TOKEN = "vt"  # noqa: S105 - an id prefix, not a secret
    SUBSCRIPTION = "ws"
    WEBHOOK_SECRET = "sc"  # noqa: S105 - an id prefix, not a secret
    REFUND = "rfnd"
    REVERSAL = "rvs"
    API_KEY = "key"
    AUDIT = "aud"


# Only setup and payment intents carry the mode in sandbox (``si_sandbox_…``).
_MODED = {Prefix.SETUP_INTENT, Prefix.PAYMENT_INTENT}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class IdFactory:
    """Builds ids from a source of random bytes (``os.urandom`` in production, seeded in tests)."""

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random_bytes = random_bytes

    def new(self, prefix: Prefix, mode: str = "prod") -> str:
        body = b64url(self._random_bytes(RANDOM_BYTES))
        if prefix in _MODED and mode == "sandbox":
            return f"{prefix.value}_sandbox_{body}"
        return f"{prefix.value}_{body}"

    def secret(self, n_bytes: int = 32) -> str:
        """A random base64url string (43 chars for 32 bytes): keys and client session secrets."""
        return b64url(self._random_bytes(n_bytes))

    def uuid4(self) -> str:
        raw = bytearray(self._random_bytes(16))
        raw[6] = (raw[6] & 0x0F) | 0x40
        raw[8] = (raw[8] & 0x3F) | 0x80
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
