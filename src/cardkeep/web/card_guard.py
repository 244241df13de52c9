"""The card guards of the request pipeline (CONTRACT §1, §2).

- ``contains_card_fields``: on the API listener, a body carrying card fields (``cardDetails``,
  ``cardNumber``, ``cv2``, ``cvv``) at any depth is refused, unread beyond this check.
- ``pan_field``: on both listeners, any key or value outside ``cardDetails.cardNumber`` holding what
  ``domain.card.looks_like_pan`` calls a card number is refused, naming the field (masked), never
  echoing the value, so cardkeep never stores a PAN in clear outside the vault.
"""

from __future__ import annotations

from typing import Any

from cardkeep.domain.card import looks_like_pan, mask_pans

CARD_FIELDS = frozenset({"carddetails", "cardnumber", "cv2", "cvv"})


def contains_card_fields(value: Any) -> bool:
    """True when any object key, at any depth, names a card field (any case)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if str(key).lower() in CARD_FIELDS:
                    return True
                stack.append(child)
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _name(path: str, key: str) -> str:
    shown = mask_pans(key)
    shown = shown[:1].upper() + shown[1:]
    return f"{path}.{shown}" if path else shown


def _is_card_number(path: str, key: str, value: Any) -> bool:
    """Where a card number belongs: ``cardDetails.cardNumber`` (and a ``cardDetails`` that is not
    even an object, which validation refuses without storing anything)."""
    if path == "" and key.lower() == "carddetails":
        return not isinstance(value, dict)
    return path.lower() == "carddetails" and key.lower() == "cardnumber"


def pan_field(body: Any) -> str | None:
    """The path (Dojo's PascalCase dotted form, masked) of the first key or value that holds a card
    number, or None. ``cardDetails.cardNumber`` is where a card number belongs and is skipped."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                key = str(key)
                here = _name(path, key)
                if looks_like_pan(key):
                    return path or "$"
                if _is_card_number(path, key, child):
                    continue
                stack.append((here, child))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(node))
        elif (
            isinstance(node, str | int) and not isinstance(node, bool) and looks_like_pan(str(node))
        ):
            return path or "$"
    return None
