"""An account: the owner of intents and keys, with a mode and (in sandbox) its own clock offset;
and its API keys as they may be shown: id and dates, never the secret or its hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Mode(StrEnum):
    SANDBOX = "sandbox"
    PROD = "prod"


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    mode: Mode
    created_at: datetime
    clock_offset_us: int = 0

    def now(self, real_now: datetime) -> datetime:
        """The account's clock: real time plus an offset that only ever moves forward."""
        return real_now + timedelta(microseconds=self.clock_offset_us)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A secret key's public face: its id (``key_…``), account and dates. The secret itself is
    shown once, when the key is made, and stored only as a hash."""

    id: str
    account_id: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None
