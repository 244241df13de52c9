"""The vault's keys, all kept outside the database.

- The **keyring**: key-encryption keys (KEKs), several ``id → 32 random bytes`` entries with one
  marked current, as JSON ``{"current": "kek-2026-11", "keys": {"kek-2026-11": "<base64>", …}}``:
  a file named by ``CARDKEEP_KEYRING`` (mode 0600), or the same document inline in
  ``CARDKEEP_KEYRING_JSON``. A file is read again when its modification time changes (looked at
  no more than once a second, when a key is needed) and on ``reload()`` (SIGHUP in ``serve``).
- The **legacy key**: the single vault key of earlier releases (``<data dir>/vault.key`` or
  ``CARDKEEP_VAULT_KEY``), id = the first 16 hex digits of its SHA-256. It is loaded only when
  present, never generated any more, so cards sealed under it keep charging until
  ``cardkeep keys rotate --deks`` re-seals them under data-encryption keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cardkeep.keyfiles import KEY_BYTES, KeyFileError, decode
from cardkeep.logs import get_logger

KEY_FILE = "vault.key"
KEYRING_FILE = "keyring.json"
KEK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RELOAD_EVERY = 1.0  # seconds between looks at the keyring file's modification time

log = get_logger("cardkeep.keys")


@dataclass(frozen=True)
class VaultKey:
    key_id: str
    material: bytes

    def __repr__(self) -> str:
        return f"VaultKey({self.key_id}, ***)"


class VaultKeyError(RuntimeError):
    """A vault key or the keyring is missing, malformed or not the one the stored cards need."""


def legacy_key_id(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:16]


def _key(material: bytes) -> VaultKey:
    return VaultKey(legacy_key_id(material), material)


def load_legacy_key(data_dir: Path, *, env_value: str | None) -> VaultKey | None:
    """The single vault key of earlier releases, when one is present (never generated)."""
    path = data_dir / KEY_FILE
    try:
        from_file = decode(path.read_text("ascii"), str(path)) if path.exists() else None
        if env_value:
            key = decode(env_value, "CARDKEEP_VAULT_KEY")
            if from_file is not None and from_file != key:
                raise VaultKeyError(f"CARDKEEP_VAULT_KEY differs from {path}; remove one of them")
            return _key(key)
    except KeyFileError as exc:
        raise VaultKeyError(str(exc)) from exc
    return None if from_file is None else _key(from_file)


@dataclass(frozen=True)
class Keyring:
    """KEKs by id, and the id of the current one (which wraps new data-encryption keys)."""

    current: str
    keys: dict[str, bytes]

    def __repr__(self) -> str:
        return f"Keyring(current={self.current}, ids={sorted(self.keys)})"

    @property
    def current_key(self) -> VaultKey:
        return VaultKey(self.current, self.keys[self.current])

    def get(self, kek_id: str) -> bytes | None:
        return self.keys.get(kek_id)

    def to_json(self) -> str:
        keys = {k: base64.b64encode(v).decode("ascii") for k, v in sorted(self.keys.items())}
        return json.dumps({"current": self.current, "keys": keys}, indent=2) + "\n"

    def with_current(self, kek_id: str) -> Keyring:
        if kek_id not in self.keys:
            raise VaultKeyError(f"the keyring holds no key {kek_id}")
        return Keyring(kek_id, dict(self.keys))

    def without(self, kek_id: str) -> Keyring:
        return Keyring(self.current, {k: v for k, v in self.keys.items() if k != kek_id})

    @classmethod
    def generate(cls, kek_id: str) -> Keyring:
        return cls(kek_id, {kek_id: os.urandom(KEY_BYTES)})


def parse_keyring(text: str, source: str) -> Keyring:
    """The keyring in ``text``; a clear error naming ``source`` (never a key) when malformed."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise VaultKeyError(f"{source} is not JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict) or not doc["keys"]:
        raise VaultKeyError(f'{source} must be {{"current": ID, "keys": {{ID: base64 key, …}}}}')
    keys: dict[str, bytes] = {}
    for kek_id, value in doc["keys"].items():
        if not KEK_ID.fullmatch(kek_id):
            raise VaultKeyError(f"{source}: {kek_id!r} is not a key id (letters, digits, . _ -)")
        if not isinstance(value, str):
            raise VaultKeyError(f"{source}: key {kek_id} must be a base64 string")
        try:
            keys[kek_id] = decode(value, f"{source}: key {kek_id}")
        except KeyFileError as exc:
            raise VaultKeyError(str(exc)) from exc
    current = doc.get("current")
    if not isinstance(current, str) or current not in keys:
        raise VaultKeyError(f"{source}: current must name one of its keys")
    return Keyring(current, keys)


def write_keyring(path: Path, keyring: Keyring) -> None:
    """Write the keyring file atomically, mode 0600 (a reader sees the old or the new file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(keyring.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class KeyringSource:
    """The keyring as the vault reads it: inline (fixed), or a file re-read when it changes."""

    def __init__(
        self,
        keyring: Keyring,
        path: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keyring = keyring
        self.path = path
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stamp = self._stat() if path is not None else None
        self._checked = monotonic()

    @classmethod
    def inline(cls, text: str) -> KeyringSource:
        return cls(parse_keyring(text, "CARDKEEP_KEYRING_JSON"))

    @classmethod
    def file(cls, path: Path, monotonic: Callable[[], float] = time.monotonic) -> KeyringSource:
        return cls(read_keyring(path), path, monotonic)

    def _stat(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def get(self) -> Keyring:
        """The keyring; a file is looked at again (at most once a second) and re-read if it
        changed. A file that became unreadable or malformed leaves the last good keyring."""
        if self.path is None:
            return self._keyring
        now = self._monotonic()
        if now - self._checked >= RELOAD_EVERY:
            with self._lock:
                self._checked = now
                if self._stat() != self._stamp:
                    self._reload_locked()
        return self._keyring

    def reload(self) -> Keyring:
        """Read the file again now (SIGHUP)."""
        if self.path is not None:
            with self._lock:
                self._checked = self._monotonic()
                self._reload_locked()
        return self._keyring

    def _reload_locked(self) -> None:
        assert self.path is not None
        stamp = self._stat()
        try:
            self._keyring = read_keyring(self.path)
        except (VaultKeyError, OSError) as exc:
            log.error("keyring_reload_failed", reason=str(exc))
            return
        self._stamp = stamp
        log.info("keyring_loaded", current=self._keyring.current, keys=sorted(self._keyring.keys))

    def set_current(self, kek_id: str) -> bool:
        """Make ``kek_id`` current in the keyring file; False for an inline keyring (the
        operator changes it)."""
        return self._rewrite(self._latest().with_current(kek_id))

    def remove(self, kek_id: str) -> bool:
        """Remove ``kek_id`` from the keyring file; False for an inline keyring."""
        return self._rewrite(self._latest().without(kek_id))

    def _latest(self) -> Keyring:
        return self._keyring if self.path is None else read_keyring(self.path)

    def _rewrite(self, keyring: Keyring) -> bool:
        if self.path is None:
            return False
        with self._lock:
            write_keyring(self.path, keyring)
            self._keyring, self._stamp = keyring, self._stat()
        return True


def read_keyring(path: Path) -> Keyring:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise VaultKeyError(f"cannot read the keyring {path}: {exc.strerror}") from exc
    return parse_keyring(text, str(path))


def generate_keyring_file(path: Path, kek_id: str) -> Keyring:
    """A new keyring file with one random KEK (mode 0600; an existing file is not touched)."""
    keyring = Keyring.generate(kek_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(keyring.to_json())
    return keyring
