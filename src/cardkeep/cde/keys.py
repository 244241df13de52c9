"""The vault's key: from CARDKEEP_VAULT_KEY, or the key file in the data directory.

A data directory without either gets a key file generated on first use (mode 0600). When both are
present they must be the same key, and ``bootstrap`` refuses to start when stored cards were sealed
under a key that is not loaded. Key rotation and key ids per card come with the full vault.
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


class VaultKeyError(RuntimeError):
    """The vault key is missing, malformed or not the one the stored cards need."""


def _from_text(text: str, source: str) -> VaultKey:
    try:
        material = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise VaultKeyError(f"{source} is not base64") from exc
    if len(material) != 32:
        raise VaultKeyError(f"{source} must be 32 bytes (AES-256), base64-encoded")
    return VaultKey(hashlib.sha256(material).hexdigest()[:16], material)


def load_key(data_dir: Path, *, env_value: str | None) -> VaultKey:
    path = data_dir / KEY_FILE
    from_file = _from_text(path.read_text("ascii"), str(path)) if path.exists() else None
    if env_value:
        key = _from_text(env_value, "CARDKEEP_VAULT_KEY")
        if from_file is not None and from_file.key_id != key.key_id:
            raise VaultKeyError(
                f"CARDKEEP_VAULT_KEY (key {key.key_id}) differs from {path} "
                f"(key {from_file.key_id}); remove one of them"
            )
        return key
    if from_file is not None:
        return from_file
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = base64.b64encode(os.urandom(32)).decode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return _from_text(text, str(path))
