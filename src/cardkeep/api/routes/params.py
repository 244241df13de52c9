"""Query-string flags (``includeAuthorized``, ``returnCanceled``): true/false, any case."""

from __future__ import annotations

from cardkeep.domain.errors import ValidationFailed


def flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValidationFailed.one(
            name[:1].upper() + name[1:], f"The {name} parameter must be true or false."
        )
    return lowered == "true"
