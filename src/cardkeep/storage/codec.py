"""How records are stored: JSON documents with a schema version, and the one timestamp encoding.

- Documents (``doc`` columns) are ``{"v": <version>, "record": {...}}`` (version 2 added a payment
  intent's ``attempt_request``, version 3 both intents' ``purged_at``; every version decodes); a
  document written before versions existed (a bare record) reads as version 0, which has the same
  fields. A committed
  golden document of each version is decoded by a test, so a change of shape cannot go unnoticed.
- Every stored instant is an integer count of microseconds since the epoch, UTC (``micros``,
  ``from_micros``), on every engine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import msgspec

from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.refund import Refund
from cardkeep.domain.setup_intent import SetupIntent

SCHEMA_VERSION = 3
_VERSIONED = b'{"v"'
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

R = TypeVar("R")


class _Doc(msgspec.Struct, Generic[R]):
    v: int
    record: R


_encoder = msgspec.json.Encoder()
_si = msgspec.json.Decoder(_Doc[SetupIntent])
_pi = msgspec.json.Decoder(_Doc[PaymentIntent])
_refund = msgspec.json.Decoder(_Doc[Refund])
_si_v0 = msgspec.json.Decoder(SetupIntent)
_pi_v0 = msgspec.json.Decoder(PaymentIntent)


def encode(record: Any) -> bytes:
    """A record as its stored document, with the current schema version."""
    return _encoder.encode(_Doc(SCHEMA_VERSION, record))


def _versioned(raw: bytes | str) -> tuple[bool, bytes]:
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    return data.lstrip().startswith(_VERSIONED), data


def decode_si(raw: bytes | str) -> SetupIntent:
    versioned, data = _versioned(raw)
    return _si.decode(data).record if versioned else _si_v0.decode(data)


def decode_pi(raw: bytes | str) -> PaymentIntent:
    versioned, data = _versioned(raw)
    return _pi.decode(data).record if versioned else _pi_v0.decode(data)


def decode_refund(raw: bytes | str) -> Refund:
    """Refunds were first stored at version 2: always versioned."""
    return _refund.decode(raw.encode() if isinstance(raw, str) else bytes(raw)).record


def micros(ts: datetime) -> int:
    """A timestamp as integer microseconds since the epoch: how every instant is stored."""
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)
