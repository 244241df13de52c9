"""The card data types: ``CardNumber`` (a PAN) and ``Cvv``. Only ``cardkeep.cde`` may import them
(an import-linter contract checks it).

Both print masked: ``repr``/``str`` never show more than the first six and last four digits of a
PAN, and never any digit of a CVV. Both refuse to be pickled, so they cannot slip into a queue or
a cache by accident. The rules they apply (Luhn, scheme, masking) are ``domain.card``'s.
"""

from __future__ import annotations

import re
from typing import NoReturn

from cardkeep.domain.card import (
    PAN_MAX_DIGITS,
    PAN_MIN_DIGITS,
    Scheme,
    detect_scheme,
    luhn_ok,
    mask,
)


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
        if not PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS:
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
        return mask(self._digits)

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
