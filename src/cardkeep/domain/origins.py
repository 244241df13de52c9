"""Which web origins may frame the hosted card page and receive its outcome (CONTRACT §9).

An account lists its origins (``cardkeep accounts origins``); each is ``scheme://host[:port]``,
normalised (lower-case host, no default port, no path). Prod accounts list ``https://`` origins
only. A sandbox account that lists none allows ``http://localhost`` and ``http://127.0.0.1`` on any
port, so a merchant can try the page on their machine. The page answers only to an origin these
rules allow, never to ``"*"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from cardkeep.domain.account import Mode
from cardkeep.domain.errors import ValidationFailed

MAX_ORIGINS = 20
SANDBOX_DEFAULT = ("http://localhost:*", "http://127.0.0.1:*")


def normalise(origin: str, mode: Mode) -> str:
    """The origin as stored, or ValidationFailed naming what is wrong with it."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        raise ValidationFailed.one("Origin", f"{origin!r} is not an origin.") from None
    schemes = ("https", "http") if mode is Mode.SANDBOX else ("https",)
    if parts.scheme not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise ValidationFailed.one("Origin", f"{origin!r}: an origin starts with {allowed}.")
    host = (parts.hostname or "").rstrip(".")
    extra = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username
    if not host or extra:
        raise ValidationFailed.one(
            "Origin", f"{origin!r}: an origin is scheme://host[:port], nothing more."
        )
    default = 443 if parts.scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + ("" if port in (None, default) else f":{port}")


def normalise_all(origins: Sequence[str], mode: Mode) -> tuple[str, ...]:
    if len(origins) > MAX_ORIGINS:
        raise ValidationFailed.one("Origin", f"An account lists at most {MAX_ORIGINS} origins.")
    return tuple(dict.fromkeys(normalise(o, mode) for o in origins))


def effective(configured: Sequence[str], mode: Mode) -> tuple[str, ...]:
    """What an account allows: its list, or the sandbox default when a sandbox lists none."""
    if not configured and mode is Mode.SANDBOX:
        return SANDBOX_DEFAULT
    return tuple(configured)


def allows(origin: str, configured: Sequence[str], mode: Mode) -> bool:
    """Whether ``origin`` (as a browser reports it) may frame the page and hear its outcome."""
    try:
        wanted = normalise(origin, mode)
    except ValidationFailed:
        return False
    for allowed in effective(configured, mode):
        if allowed.endswith(":*"):
            base = allowed[:-2]
            if wanted == base or (
                wanted.startswith(base + ":") and wanted[len(base) + 1 :].isdigit()
            ):
                return True
        elif wanted == allowed:
            return True
    return False
