"""Lenient, declarative request decoding that reports every invalid field, as ASP.NET does.

Rules (CONTRACT §2): field names match case-insensitively (exact camelCase first, the fast path);
integers accept digit strings; unknown fields are ignored; ``null`` is the same as absent; enums
match case-insensitively and come out canonical. Error paths are Dojo's PascalCase dotted form
(``IntendedAmount.Value``). Messages name the field and the rule, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from cardkeep.domain.money import MAX_VALUE, MIN_VALUE, Money


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
Errors = dict[str, list[str]]


def pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def join(path: str, name: str) -> str:
    return f"{path}.{pascal(name)}" if path else pascal(name)


def lookup(obj: dict[str, Any], name: str) -> Any:
    """The value of ``name`` in ``obj``: exact key first, then any casing; null counts as absent."""
    if name in obj:
        value = obj[name]
    else:
        lowered = name.lower()
        value = None
        for key, candidate in obj.items():
            if key.lower() == lowered:
                value = candidate
                break
    return MISSING if value is None else value


class Field:
    """One named field. ``parse`` returns the decoded value or MISSING (and records errors)."""

    def __init__(self, name: str, *, required: bool = False) -> None:
        self.name = name
        self.required = required

    def read(self, obj: dict[str, Any], path: str, errors: Errors) -> Any:
        here = join(path, self.name)
        raw = lookup(obj, self.name)
        if raw is MISSING:
            if self.required:
                add(errors, here, f"The {here} field is required.")
            return MISSING
        return self.parse(raw, here, errors)

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        raise NotImplementedError


def add(errors: Errors, path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


class Str(Field):
    def __init__(
        self, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
    ) -> None:
        super().__init__(name, required=required)
        self.min_len = min_len
        self.max_len = max_len

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        if not isinstance(raw, str):
            add(errors, path, f"The {path} field must be a string.")
            return MISSING
        if len(raw) < self.min_len or (self.max_len is not None and len(raw) > self.max_len):
            if self.max_len is None:
                rule = f"a minimum length of {self.min_len}"
            elif self.min_len:
                rule = f"a minimum length of {self.min_len} and a maximum length of {self.max_len}"
            else:
                rule = f"a maximum length of {self.max_len}"
            add(errors, path, f"The field {path} must be a string with {rule}.")
            return MISSING
        return raw


class Int(Field):
    def __init__(self, name: str, *, required: bool = False, minimum: int, maximum: int) -> None:
        super().__init__(name, required=required)
        self.minimum = minimum
        self.maximum = maximum

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        value: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and _DIGITS.match(raw):
            value = int(raw)
        if value is None:
            add(errors, path, f"The {path} field must be an integer.")
            return MISSING
        if not self.minimum <= value <= self.maximum:
            add(
                errors, path, f"The field {path} must be between {self.minimum} and {self.maximum}."
            )
            return MISSING
        return value


class Bool(Field):
    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        add(errors, path, f"The {path} field must be true or false.")
        return MISSING


class Choice(Field):
    def __init__(self, name: str, choices: Sequence[str], *, required: bool = False) -> None:
        super().__init__(name, required=required)
        self.choices = {c.lower(): c for c in choices}

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        if isinstance(raw, str) and raw.lower() in self.choices:
            return self.choices[raw.lower()]
        allowed = ", ".join(self.choices.values())
        add(errors, path, f"The {path} field must be one of: {allowed}.")
        return MISSING


# Integers may come as strings of digits (ASP.NET leniency); more than 20 digits is out of range.
_DIGITS = re.compile(r"^\s*-?[0-9]{1,20}\s*$")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)


# Accepted instants, in UTC: far from datetime's limits, so no arithmetic on them can overflow, and
# always a four-digit year on the way out.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class DateTime(Field):
    """An RFC 3339 date-time with a UTC offset (extra fraction digits beyond 6 are dropped),
    between 1970 and 8999 once converted to UTC."""

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        if isinstance(raw, str) and _RFC3339.match(raw):
            try:
                value = datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
                in_range = EARLIEST <= value.astimezone(UTC) < LATEST
            except (ValueError, OverflowError):
                pass
            else:
                if in_range:
                    return value
                add(errors, path, f"The {path} field must be between 1970 and 8999 (UTC).")
                return MISSING
        add(errors, path, f"The {path} field must be an RFC 3339 date-time with a UTC offset.")
        return MISSING


class Obj(Field):
    """A nested object; decodes to a dict with canonical camelCase keys in declaration order."""

    def __init__(self, name: str, fields: Sequence[Field], *, required: bool = False) -> None:
        super().__init__(name, required=required)
        self.fields = fields

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        if not isinstance(raw, dict):
            add(errors, path, f"The {path} field must be an object.")
            return MISSING
        out: dict[str, Any] = {}
        for f in self.fields:
            value = f.read(raw, path, errors)
            if value is not MISSING:
                out[f.name] = value
        return out


class Arr(Field):
    def __init__(
        self, name: str, item: Callable[[str], Field], *, max_items: int, required: bool = False
    ) -> None:
        super().__init__(name, required=required)
        self.item = item("")
        self.max_items = max_items

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        if not isinstance(raw, list):
            add(errors, path, f"The {path} field must be an array.")
            return MISSING
        if len(raw) > self.max_items:
            add(errors, path, f"The {path} field must have at most {self.max_items} items.")
            return MISSING
        out = []
        for i, element in enumerate(raw):
            value = MISSING if element is None else self.item.parse(element, f"{path}[{i}]", errors)
            if value is not MISSING:
                out.append(value)
        return out


class StrMap(Field):
    """``metadata``: string→string; numbers are coerced to strings."""

    def __init__(self, name: str, *, max_keys: int, key_max: int, value_max: int) -> None:
        super().__init__(name)
        self.max_keys, self.key_max, self.value_max = max_keys, key_max, value_max

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        if not isinstance(raw, dict):
            add(errors, path, f"The {path} field must be an object of strings.")
            return MISSING
        if len(raw) > self.max_keys:
            add(errors, path, f"The {path} field must have at most {self.max_keys} keys.")
            return MISSING
        out: dict[str, str] = {}
        for key, value in raw.items():
            here = f"{path}.{key}" if len(key) <= self.key_max else path
            if not 1 <= len(key) <= self.key_max:
                add(errors, path, f"Each {path} key must be 1 to {self.key_max} characters.")
                continue
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                add(errors, here, f"The {here} value must be a string.")
                continue
            text = value if isinstance(value, str) else str(value)
            if len(text) > self.value_max:
                add(errors, here, f"The {here} value must be at most {self.value_max} characters.")
                continue
            out[key] = text
        return out


class MoneyField(Field):
    """``{"value": int minor units, "currencyCode": "GBP"}`` → Money. Floats are refused."""

    def parse(self, raw: Any, path: str, errors: Errors) -> Any:
        if not isinstance(raw, dict):
            add(errors, path, f"The {path} field must be an object with value and currencyCode.")
            return MISSING
        value = Int("value", required=True, minimum=MIN_VALUE, maximum=MAX_VALUE).read(
            raw, path, errors
        )
        currency = Str("currencyCode", required=True, min_len=1, max_len=10).read(raw, path, errors)
        if currency is not MISSING and not (
            len(currency) == 3 and currency.isascii() and currency.isalpha()
        ):
            add(errors, join(path, "currencyCode"), "The currency code must be ISO 4217 alpha-3.")
            return MISSING
        if value is MISSING or currency is MISSING:
            return MISSING
        return Money(value, currency.upper())


def read_object(body: Any, fields: Sequence[Field], errors: Errors) -> dict[str, Any]:
    """Decode a request body (a JSON object) with ``fields``; errors collect into ``errors``."""
    if not isinstance(body, dict):
        add(errors, "$", "The request body must be a JSON object.")
        return {}
    return Obj("", fields).parse(body, "", errors)  # type: ignore[no-any-return]
