"""Webhooks: signing and verifying deliveries (``verify`` is for merchants' receivers).

``from cardkeep.webhooks import verify`` imports nothing but the standard library.
"""

from cardkeep.webhooks.signing import WebhookVerificationError, verify

__all__ = ["WebhookVerificationError", "verify"]
