"""Request bodies: at most 64 KiB, parsed as JSON whatever ``Content-Type`` says, nesting bounded.

An empty body is ``None`` (endpoints without a body accept none, empty or ``{}``).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request

from cardkeep.domain.errors import ValidationFailed
from cardkeep.web.errors import PayloadTooLarge

MAX_BODY = 64 * 1024
MAX_DEPTH = 32


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY} bytes.")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise PayloadTooLarge(f"The request body is larger than {MAX_BODY} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client's doing, not the server's: a 4xx that nobody may read, never a 500.
        raise ValidationFailed.one(
            "$", "The request body ended before it was complete: the client went away."
        ) from None
    return b"".join(chunks)


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        raise ValidationFailed.one("$", "The request body is not valid JSON.") from None
    if _depth_exceeds(value, MAX_DEPTH):
        raise ValidationFailed.one("$", f"The request body nests deeper than {MAX_DEPTH} levels.")
    return value


class _Obj(dict[str, Any]):
    """A decoded JSON object that remembers which of its keys were repeated (any case)."""

    repeated: list[str]


def _remembering(items: list[tuple[str, Any]]) -> _Obj:
    obj = _Obj(items)
    seen: set[str] = set()
    obj.repeated = []
    for key, _ in items:
        if key.lower() in seen:
            obj.repeated.append(key)
        seen.add(key.lower())
    return obj


def repeated_keys(raw: bytes, under: str) -> list[str]:
    """The keys repeated (in any case) inside the top-level object ``under`` of a JSON body, and
    ``under`` itself when it is repeated: where "the last one wins" would be a guess, the caller
    refuses the request instead. Paths in Dojo's form (``CardDetails.Cv2``)."""
    try:
        top = json.loads(raw, object_pairs_hook=_remembering)
    except ValueError:
        return []
    if not isinstance(top, _Obj):
        return []
    wanted = under.lower()
    head = under[:1].upper() + under[1:]
    found = [head for key in top.repeated if key.lower() == wanted]
    for key, value in top.items():
        if key.lower() == wanted and isinstance(value, _Obj):
            found += [f"{head}.{k[:1].upper()}{k[1:]}" for k in value.repeated]
    return found


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative, so a hostile body cannot exhaust the stack of whoever walks it next."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False
