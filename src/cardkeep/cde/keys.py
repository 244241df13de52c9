"""The vault's key-encryption key: from CARDKEEP_VAULT_KEY, or a key file in the data directory.

A sandbox data directory gets a key file generated on first use (mode 0600). A prod deployment must
provide its key explicitly; it refuses to start without one.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

KEY_FILE = "vault.key"


@dataclass(frozen=True)
class VaultKey:
    key_id: str
    material: bytes

    def __repr__(self) -> str:
        return f"VaultKey({self.key_id}, ***)"


def _from_text(text: str) -> VaultKey:
    material = base64.b64decode(text.strip(), validate=True)
    if len(material) != 32:
        raise ValueError("the vault key must be 32 bytes (AES-256), base64-encoded")
    return VaultKey(hashlib.sha256(material).hexdigest()[:16], material)


def load_key(data_dir: Path, *, env_value: str | None, allow_generate: bool) -> VaultKey:
    if env_value:
        return _from_text(env_value)
    path = data_dir / KEY_FILE
    if path.exists():
        return _from_text(path.read_text("ascii"))
    if not allow_generate:
        raise RuntimeError(
            "no vault key: set CARDKEEP_VAULT_KEY (32 random bytes, base64) for a prod deployment"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    text = base64.b64encode(os.urandom(32)).decode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return _from_text(text)
