"""The ``Authorization`` header: ``Basic <raw>`` (Dojo's form) or ``Basic base64(<raw>:)``
(RFC 7617). The credential is a secret key or a client session secret; never logged or echoed."""

from __future__ import annotations

import base64
import binascii


def basic_credential(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "basic" or not value:
        return None
    if value.startswith("sk_"):
        return value
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return value
    user, sep, _ = decoded.partition(":")
    return user if sep and user else value


def missing_credential_detail(header: str | None) -> str:
    """Why no credential was found: absent, or sent under another scheme than Basic."""
    scheme = (header or "").strip().partition(" ")[0]
    if scheme and scheme.lower() != "basic":
        return (
            "The Authorization header must use the Basic scheme: Authorization: Basic <secret key>."
        )
    return "The secret key is missing."
