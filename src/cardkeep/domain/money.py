"""Money: an integer count of minor units and a currency code. Floats are refused, never rounded."""

from __future__ import annotations

from dataclasses import dataclass

MIN_VALUE = 1
MAX_VALUE = 99_999_999_999


@dataclass(frozen=True, slots=True)
class Money:
    value: int
    currency_code: str

    def __post_init__(self) -> None:
        if type(self.value) is not int:
            raise TypeError("Money.value must be an int of minor units")
        if not MIN_VALUE <= self.value <= MAX_VALUE:
            raise ValueError(f"Money.value must be between {MIN_VALUE} and {MAX_VALUE}")
        if len(self.currency_code) != 3 or not self.currency_code.isalpha():
            raise ValueError("Money.currency_code must be a three-letter code")
