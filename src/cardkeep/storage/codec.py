"""Serialisation of domain records to the JSON documents that storage keeps, and back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from cardkeep.domain.events import DomainEvent
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.domain.timefmt import iso

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_si_decoder = msgspec.json.Decoder(SetupIntent)
_pi_decoder = msgspec.json.Decoder(PaymentIntent)


def encode(record: Any) -> bytes:
    return _encoder.encode(record)


def decode_si(raw: bytes | str) -> SetupIntent:
    return _si_decoder.decode(raw)


def decode_pi(raw: bytes | str) -> PaymentIntent:
    return _pi_decoder.decode(raw)


def event_payload(event: DomainEvent) -> bytes:
    """The webhook body: keys in the contract's order, no whitespace."""
    return _encoder.encode(
        {
            "id": event.id,
            "event": event.event,
            "accountId": event.account_id,
            "createdAt": iso(event.created_at),
            "data": event.data,
        }
    )


def micros(ts: datetime) -> int:
    """A timestamp as integer microseconds since the epoch: the form indexed columns use."""
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
