"""The API listener's card guard: a body carrying card fields is refused, unread beyond this check
(CONTRACT §1). Card data goes to the PCI listener only."""

from __future__ import annotations

from typing import Any

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
