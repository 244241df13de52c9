"""Card fingerprints: HMAC-SHA256 of the card number under a key of their own, kept outside the
database (``fingerprint.key`` in the data directory, or ``CARDKEEP_FINGERPRINT_KEY``).

The card-testing limits count distinct cards by fingerprint (``service.card_limits``). A
fingerprint is computed here only, stored only in ``card_attempts``, and never shown in a
response, a log line or a webhook: without the key it cannot be matched against a card number.
"""

from __future__ import annotations

import hashlib
import hmac

from cardkeep.cde.pan import CardNumber

KEY_BYTES = 32


class CardFingerprints:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a card fingerprint key is {KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "CardFingerprints(***)"

    def of(self, pan: CardNumber) -> str:
        return hmac.new(self._key, pan.digits.encode("ascii"), hashlib.sha256).hexdigest()
