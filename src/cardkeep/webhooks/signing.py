"""Signing and verifying webhook deliveries (CONTRACT §8.3).

``Dojo-Signature: sha256=<HMAC-SHA256 of the body, uppercase hex pairs joined by "-">`` keyed with
the UTF-8 bytes of the subscription's active secret, as Dojo's SDKs render and verify it; and the
Standard Webhooks headers (``webhook-id``, ``webhook-timestamp`` in real Unix seconds,
``webhook-signature`` with one ``v1,<base64>`` entry per secret of the subscription, so a receiver
keeps verifying while a secret rotates). ``verify`` is what a merchant's receiver calls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

DOJO_SIGNATURE = "Dojo-Signature"
DEFAULT_TOLERANCE = 300  # seconds a Standard Webhooks timestamp may be away from now


class WebhookVerificationError(Exception):
    """The body and headers do not carry a valid signature for the secret."""


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def dojo_signature(secret: str, body: bytes) -> str:
    """The ``Dojo-Signature`` header value for ``body`` under ``secret``."""
    return "sha256=" + "-".join(f"{b:02X}" for b in _mac(secret, body))


def standard_signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(_mac(secret, signed)).decode("ascii")


def signed_headers(
    body: bytes, *, event_id: str, timestamp: int, active: str, secrets: Iterable[str]
) -> dict[str, str]:
    """Every signature header of one attempt: Dojo's with the active secret, Standard Webhooks'
    with each secret of the subscription (the active one first)."""
    ordered = [active, *(s for s in secrets if s != active)]
    return {
        DOJO_SIGNATURE: dojo_signature(active, body),
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature(s, event_id, timestamp, body) for s in ordered
        ),
    }


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery as a merchant's receiver gets it and return the decoded event.

    ``body`` is the raw request body (bytes as received, before any JSON parsing), ``headers``
    the request headers (any case), ``secret`` the subscription's secret as cardkeep shows it.
    Valid if the ``Dojo-Signature`` matches, or if a ``webhook-signature`` entry matches and its
    ``webhook-timestamp`` is within ``tolerance`` seconds of now (which guards against replays;
    Dojo's own header carries no timestamp). Raises ``WebhookVerificationError`` otherwise.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    dojo = lower.get(DOJO_SIGNATURE.lower())
    if dojo is not None and hmac.compare_digest(
        dojo.strip().encode(), dojo_signature(secret, body).encode()
    ):
        return _decoded(body)
    webhook_id, stamp, entries = (
        lower.get("webhook-id"),
        lower.get("webhook-timestamp"),
        lower.get("webhook-signature"),
    )
    if webhook_id is None or stamp is None or entries is None:
        raise WebhookVerificationError("No valid signature for this secret.")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a Unix time.") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far from now.")
    expected = standard_signature(secret, webhook_id, timestamp, body).encode()
    if any(hmac.compare_digest(entry.encode(), expected) for entry in entries.split()):
        return _decoded(body)
    raise WebhookVerificationError("No valid signature for this secret.")


def _decoded(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise WebhookVerificationError("The signed body is not JSON.") from None
    if not isinstance(doc, dict):
        raise WebhookVerificationError("The signed body is not a JSON object.")
    return doc
