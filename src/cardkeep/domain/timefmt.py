"""The one text form of a timestamp, on the wire and in storage: ISO 8601 UTC, microseconds, Z.

The year is always four digits (RFC 3339), whatever the instant.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso_seconds(ts: datetime) -> str:
    t = ts.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


def iso(ts: datetime) -> str:
    return iso_seconds(ts)[:-1] + f".{ts.microsecond:06d}Z"
