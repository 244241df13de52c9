"""The ``version`` header: the newest supported API release on or before the date it names."""

from __future__ import annotations

import re
from datetime import date

from cardkeep.web.errors import InvalidVersion

RELEASES = ("2022-04-07", "2024-02-05", "2025-09-10")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def resolve_release(value: str | None) -> str:
    if value is None:
        raise InvalidVersion("The version header is required (e.g. 2025-09-10).")
    head = value[:10]
    try:
        asked = date.fromisoformat(head).isoformat() if _DATE.match(head) else None
    except ValueError:  # shaped like a date but not one (2025-02-30)
        asked = None
    if asked is None:
        raise InvalidVersion("The version header must start with a date yyyy-mm-dd.")
    eligible = [r for r in RELEASES if r <= asked]
    if not eligible:
        raise InvalidVersion(f"The oldest supported version is {RELEASES[0]}.")
    return eligible[-1]
