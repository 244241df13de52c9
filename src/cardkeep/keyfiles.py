"""Secret keys kept outside the database: 32 random bytes, base64, from an environment variable or
a key file in the data directory (generated on first use, mode 0600). When both are present they
must be the same key. Neutral: used by the vault (``cde.keys``) and by idempotency records."""

from __future__ import annotations

import base64
import os
from pathlib import Path

KEY_BYTES = 32


class KeyFileError(RuntimeError):
    """A key is malformed, or the variable and the file disagree; the message says which."""


def exposure(path: Path) -> str | None:
    """Why the file at ``path`` is not its owner's alone (readable by group or others, and its
    mode), or None when it is. OSError when it cannot be looked at."""
    mode = path.stat().st_mode
    if mode & 0o077:
        return f"is readable by group or others (mode {mode & 0o777:04o}): chmod 600 it"
    return None


def decode(text: str, source: str) -> bytes:
    try:
        material = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise KeyFileError(f"{source} is not base64") from exc
    if len(material) != KEY_BYTES:
        raise KeyFileError(f"{source} must be {KEY_BYTES} bytes (AES-256), base64-encoded")
    return material


def load_or_create(path: Path, *, env_name: str, env_value: str | None) -> bytes:
    """The key from ``env_value`` or ``path``; a new one in ``path`` when neither has one."""
    from_file = decode(path.read_text("ascii"), str(path)) if path.exists() else None
    if env_value:
        key = decode(env_value, env_name)
        if from_file is not None and from_file != key:
            raise KeyFileError(f"{env_name} differs from {path}; remove one of them")
        return key
    if from_file is not None:
        return from_file
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return decode(text, str(path))
