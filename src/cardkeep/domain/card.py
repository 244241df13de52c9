"""Card value objects: CardNumber (Luhn, scheme, masking), Expiry, Cvv, and the masked CardOnFile.

Everything here prints masked: ``repr``/``str`` never show more than the first six and last four
digits of a PAN, and never any digit of a CVV. CardNumber and Cvv refuse to be pickled, so they
cannot slip into a queue or a cache by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NoReturn

MAX_YEARS_AHEAD = 20


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
    return lo <= int(digits[:width]) <= hi


def detect_scheme(digits: str) -> Scheme | None:
    """The scheme of a PAN by its leading digits (IIN ranges), or None when unknown."""
    n = len(digits)
    if digits[:2] in ("34", "37") and n == 15:
        return Scheme.AMEX
    if (_in_range(digits, 300, 305) or digits[:2] in ("36", "38", "39")) and 14 <= n <= 19:
        return Scheme.DCI
    if (
        digits.startswith("6011")
        or _in_range(digits, 644, 649)
        or digits.startswith("65")
        or _in_range(digits, 622126, 622925)
    ) and 16 <= n <= 19:
        return Scheme.DISCOVER
    if (_in_range(digits, 51, 55) or _in_range(digits, 2221, 2720)) and n == 16:
        return Scheme.MASTERCARD
    if digits.startswith("4") and n in (13, 16, 19):
        return Scheme.VISA
    if (digits.startswith("50") or _in_range(digits, 56, 69)) and 12 <= n <= 19:
        return Scheme.MAESTRO
    return None


def _no_pickle(obj: object) -> NoReturn:
    raise TypeError(f"{type(obj).__name__} holds card data and cannot be serialised")


class CardNumber:
    """A Luhn-valid PAN of 12-19 digits with a known scheme. Prints masked."""

    __slots__ = ("_digits", "scheme")

    _STRIP = re.compile(r"[\s-]")

    def __init__(self, raw: str) -> None:
        digits = self._STRIP.sub("", raw)
        if not digits.isascii() or not digits.isdigit():
            raise ValueError("must contain only digits, spaces and dashes")
        if not 12 <= len(digits) <= 19:
            raise ValueError("must have 12 to 19 digits")
        if not luhn_ok(digits):
            raise ValueError("is not a valid card number")
        scheme = detect_scheme(digits)
        if scheme is None:
            raise ValueError("is not a card of a supported scheme")
        self._digits = digits
        self.scheme = scheme

    @property
    def digits(self) -> str:
        """The full PAN. Only the vault and the acquirer connectors may read this."""
        return self._digits

    @property
    def masked(self) -> str:
        d = self._digits
        return d[:6] + "*" * (len(d) - 10) + d[-4:]

    @property
    def last4(self) -> str:
        return self._digits[-4:]

    def __repr__(self) -> str:
        return f"CardNumber({self.masked})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CardNumber) and other._digits == self._digits

    def __hash__(self) -> int:
        return hash(("CardNumber", self._digits))

    def __reduce__(self) -> NoReturn:
        _no_pickle(self)


class Cvv:
    """The card verification value: used for one authorization, held in memory only."""

    __slots__ = ("_digits",)

    def __init__(self, raw: str, scheme: Scheme | None) -> None:
        want = 4 if scheme is Scheme.AMEX else 3
        if not raw.isascii() or not raw.isdigit() or len(raw) != want:
            raise ValueError(f"must be {want} digits")
        self._digits = raw

    @property
    def digits(self) -> str:
        return self._digits

    def __repr__(self) -> str:
        return "Cvv(***)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        _no_pickle(self)


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
    """What cardkeep keeps about a card outside the vault: masked number and a vault token."""

    masked_number: str
    last4: str
    scheme: Scheme
    funding_type: str | None
    expiry: Expiry
    cardholder_name: str | None
    vault_token: str | None
