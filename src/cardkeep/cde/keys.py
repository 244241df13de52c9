"""The vault's key: from CARDKEEP_VAULT_KEY, or the key file in the data directory.

A data directory without either gets a key file generated on first use (mode 0600). When both are
present they must be the same key, and ``bootstrap`` refuses to start when stored cards were sealed
under a key that is not loaded. Key rotation and key ids per card come with the full vault.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cardkeep.keyfiles import KeyFileError, load_or_create

KEY_FILE = "vault.key"


@dataclass(frozen=True)
class VaultKey:
    key_id: str
    material: bytes

    def __repr__(self) -> str:
        return f"VaultKey({self.key_id}, ***)"


class VaultKeyError(RuntimeError):
    """The vault key is missing, malformed or not the one the stored cards need."""


def _key(material: bytes) -> VaultKey:
    return VaultKey(hashlib.sha256(material).hexdigest()[:16], material)


def load_key(data_dir: Path, *, env_value: str | None) -> VaultKey:
    try:
        material = load_or_create(
            data_dir / KEY_FILE, env_name="CARDKEEP_VAULT_KEY", env_value=env_value
        )
    except KeyFileError as exc:
        raise VaultKeyError(str(exc)) from exc
    return _key(material)
