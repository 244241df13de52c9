"""Card rules that need no card data type: Luhn, scheme prefixes, masking, finding PANs in text,
the expiry month, and the masked card kept on file.

The PAN and CVV value types live in ``cardkeep.cde.pan``; nothing outside ``cde/`` may hold one.
These pure rules are what everyone else needs: the request guard that refuses card numbers in free
text (``looks_like_pan``), log redaction (``mask_pans``) and rendering (``mask``). Written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

MAX_YEARS_AHEAD = 20
PAN_MIN_DIGITS = 12
PAN_MAX_DIGITS = 19


class Scheme(StrEnum):
    VISA = "VISA"
    MASTERCARD = "MASTERCARD"
    MAESTRO = "MAESTRO"
    DISCOVER = "DISCOVER"
    DCI = "DCI"
    AMEX = "AMEX"


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _in_range(digits: str, lo: int, hi: int) -> bool:
    width = len(str(lo))
    head = digits[:width]
    return len(head) == width and lo <= int(head) <= hi


def _scheme_by_prefix(digits: str) -> list[tuple[Scheme, range]]:
    """Every scheme whose IIN prefixes match the leading digits, with the lengths it issues."""
    found: list[tuple[Scheme, range]] = []
    if digits[:2] in ("34", "37"):
        found.append((Scheme.AMEX, range(15, 16)))
    if _in_range(digits, 300, 305) or digits[:2] in ("36", "38", "39"):
        found.append((Scheme.DCI, range(14, 20)))
    if (
        digits.startswith("6011")
        or _in_range(digits, 644, 649)
        or digits.startswith("65")
        or _in_range(digits, 622126, 622925)
    ):
        found.append((Scheme.DISCOVER, range(16, 20)))
    if _in_range(digits, 51, 55) or _in_range(digits, 2221, 2720):
        found.append((Scheme.MASTERCARD, range(16, 17)))
    if digits.startswith("4"):
        found.append((Scheme.VISA, range(13, 20, 3)))
    if digits.startswith("50") or _in_range(digits, 56, 69):
        found.append((Scheme.MAESTRO, range(12, 20)))
    return found


def detect_scheme(digits: str) -> Scheme | None:
    """The scheme of a PAN by its leading digits (IIN ranges) and length, or None when unknown."""
    for scheme, lengths in _scheme_by_prefix(digits):
        if len(digits) in lengths:
            return scheme
    return None


def mask(digits: str) -> str:
    """The only form in which a PAN leaves the vault: first six and last four digits."""
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


# A maximal run of digits, written together or separated by single whitespace characters, dashes,
# dots or underscores (CONTRACT §2). ASCII digits only: other digit characters are not a PAN.
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9](?:[\s._-]?[0-9])*(?![0-9])")
# Log redaction hides more: up to two separators between digits ("5200  0000  0000  1005").
_LOOSE_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9](?:[\s._-]{0,2}[0-9])*(?![0-9])")
_SEPARATORS = re.compile(r"[\s._-]")
# The least a loose run needs to hold a PAN: PAN_MIN_DIGITS digits. Most text has none, and a
# search for it is far cheaper than visiting every short run of digits.
_LOOSE_MIN_RUN = re.compile(rf"[0-9](?:[\s._-]{{0,2}}[0-9]){{{PAN_MIN_DIGITS - 1}}}")


def _luhn_run(match: re.Match[str]) -> str | None:
    """The digits of a run that could be a PAN by length and Luhn, else None."""
    digits = _SEPARATORS.sub("", match.group(0))
    if PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS and luhn_ok(digits):
        return digits
    return None


def looks_like_pan(text: str) -> bool:
    """True when ``text`` holds a Luhn-valid maximal run of 12-19 digits (together or with single
    separators) whose prefix belongs to a known card scheme (any scheme, AMEX included, whatever an
    account accepts): the rule that refuses card numbers outside ``cardDetails.cardNumber``."""
    for match in _DIGIT_RUN.finditer(text):
        digits = _luhn_run(match)
        if digits is not None and _scheme_by_prefix(digits):
            return True
    return False


def mask_pans(text: str) -> str:
    """``text`` with every Luhn-valid run of 12-19 digits masked, scheme or not, separated by up to
    two separator characters: log and error redaction errs on the side of hiding."""

    if _LOOSE_MIN_RUN.search(text) is None:
        return text

    def masked(match: re.Match[str]) -> str:
        digits = _luhn_run(match)
        return match.group(0) if digits is None else mask(digits)

    return _LOOSE_DIGIT_RUN.sub(masked, text)


_EXPIRY = re.compile(r"^\s*(\d{2})\s*/\s*(\d{2}|\d{4})\s*$", re.ASCII)


@dataclass(frozen=True, slots=True)
class Expiry:
    """A card's expiry month. The card is good until the last instant of that month (UTC)."""

    month: int
    year: int

    @classmethod
    def parse(cls, text: str) -> Expiry:
        m = _EXPIRY.match(text)
        if m is None:
            raise ValueError("must be in the format MM/YY or MM/YYYY")
        month, year = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise ValueError("must have a month between 01 and 12")
        if year < 100:
            year += 2000
        elif not 2000 <= year <= 2099:
            raise ValueError("must have a four-digit year from 2000 to 2099")
        return cls(month, year)

    @property
    def ends_at(self) -> datetime:
        """The first instant after the expiry month: the card is expired from this moment."""
        if self.month == 12:
            return datetime(self.year + 1, 1, 1, tzinfo=UTC)
        return datetime(self.year, self.month + 1, 1, tzinfo=UTC)

    def is_expired(self, now: datetime) -> bool:
        return now >= self.ends_at

    def too_far_ahead(self, now: datetime) -> bool:
        return (self.year, self.month) > (now.year + MAX_YEARS_AHEAD, now.month)

    @property
    def display(self) -> str:
        return f"{self.month:02d}/{self.year % 100:02d}"


@dataclass(frozen=True, slots=True)
class CardOnFile:
    """What cardkeep keeps about a card outside the vault: the masked number, a vault token, and
    the network transaction id of the customer-present verification, which every later
    merchant-initiated charge must reference (the card schemes' stored-credential rule)."""

    masked_number: str
    last4: str
    scheme: Scheme
    funding_type: str | None
    expiry: Expiry
    cardholder_name: str | None
    vault_token: str | None
    network_transaction_id: str | None = None
