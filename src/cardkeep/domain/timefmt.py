"""The one text form of a timestamp, on the wire and in storage: ISO 8601 UTC, microseconds, Z."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_seconds(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
