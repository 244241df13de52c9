"""Envelope encryption: cards sealed under per-account data-encryption keys (DEKs), the DEKs stored
wrapped by a key-encryption key (KEK) of a keyring kept outside the database; the keyring file read
again when it changes; cards sealed under the legacy single key still opening while it is loaded."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from cardkeep.bootstrap import (
    _check_vault_key,
    build_pci,
    check_prod_keyring,
    keyring_source,
    vault_for,
)
from cardkeep.cde import vault_store
from cardkeep.cde.keys import (
    Keyring,
    KeyringSource,
    VaultKey,
    VaultKeyError,
    legacy_key_id,
    load_legacy_key,
    parse_keyring,
    write_keyring,
)
from cardkeep.cde.pan import CardNumber
from cardkeep.cde.vault import Vault, VaultError
from cardkeep.config import Settings, SettingsError, from_env
from cardkeep.domain.account import Mode
from cardkeep.storage.memory import MemoryStorage
from tests.world import T0, World

PAN = "5200000000001005"


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def keyring_doc(current: str, **keys: bytes) -> str:
    encoded = {k.replace("_", "-"): base64.b64encode(v).decode() for k, v in keys.items()}
    return json.dumps({"current": current, "keys": encoded})


def the_card(world: World, si_id: str) -> vault_store.SealedCard:
    si = world.storage.tables.setup_intents[si_id]
    assert si.card is not None
    assert si.card.vault_token is not None
    with world.storage.transaction(write=False) as uow:
        sealed = vault_store.get(uow, si.card.vault_token)
    assert sealed is not None
    return sealed


def test_a_card_is_sealed_under_its_accounts_dek_wrapped_by_the_current_kek() -> None:
    world = World()
    first, second = world.authorized(), world.authorized()
    a, b = the_card(world, first), the_card(world, second)
    assert a.key_id == b.key_id
    assert a.key_id.startswith("dek_")
    dek = world.storage.tables.deks[a.key_id]
    assert (dek[1], dek[2], dek[4]) == (world.account.id, "kek-1", "current")
    assert world.vault.open(a).digits == PAN
    other, _, _ = world.services.accounts.create("other", Mode.SANDBOX)
    world.account = other
    c = the_card(world, world.authorized())
    assert c.key_id != a.key_id  # another account, another DEK
    # The associated data binds the card to its token and account, the DEK to its account.
    with pytest.raises(VaultError, match="failed authentication"):
        world.vault.open(replace(a, token=b.token))
    fresh = Vault(world.keyring, world.storage)  # nothing cached: unwraps from the database
    row = world.storage.tables.deks[a.key_id]
    world.storage.tables.deks[a.key_id] = (row[0], other.id, *row[2:])
    with pytest.raises(VaultError, match="failed authentication"):
        fresh.open(a)
    world.storage.tables.deks[a.key_id] = row
    assert fresh.open(a).digits == PAN


def test_a_card_whose_dek_is_unknown_or_whose_kek_is_not_loaded_does_not_open() -> None:
    world = World()
    sealed = the_card(world, world.authorized())
    other = Vault(KeyringSource(Keyring("kek-9", {"kek-9": os.urandom(32)})), world.storage)
    with pytest.raises(VaultError, match="not in the keyring"):
        other.open(sealed)
    with pytest.raises(VaultError, match="not stored"):
        other.open(replace(sealed, key_id="dek_missing"))
    with pytest.raises(VaultError, match="not loaded"):
        other.open(replace(sealed, key_id="0123456789abcdef"))


def test_the_keyring_file_is_read_again_when_it_changes_and_on_reload(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    path.parent.mkdir()
    k1, k2, k3 = os.urandom(32), os.urandom(32), os.urandom(32)
    write_keyring(path, Keyring("kek-1", {"kek-1": k1}))
    assert path.stat().st_mode & 0o777 == 0o600
    ticks = Ticks()
    source = KeyringSource.file(path, ticks)
    world = World(keyring=source)
    first = the_card(world, world.authorized())
    assert world.storage.tables.deks[first.key_id][2] == "kek-1"

    # The operator replaces the file: a new current KEK, the old one kept.
    write_keyring(path, Keyring("kek-2", {"kek-1": k1, "kek-2": k2}))
    assert source.get().current == "kek-1"  # looked at no more than once a second
    ticks.now += 1.5
    assert source.get().current == "kek-2"
    other, _, _ = world.services.accounts.create("other", Mode.SANDBOX)
    world.account = other
    second = the_card(world, world.authorized())
    assert world.storage.tables.deks[second.key_id][2] == "kek-2"  # no restart
    assert world.vault.open(first).digits == PAN

    # SIGHUP: read at once. A malformed file leaves the last good keyring.
    write_keyring(path, Keyring("kek-3", {"kek-1": k1, "kek-2": k2, "kek-3": k3}))
    world.vault.reload_keyring()
    assert source.get().current == "kek-3"
    path.write_text("{not json")
    ticks.now += 5
    assert source.get().current == "kek-3"


def test_a_card_sealed_under_the_legacy_key_opens_while_that_key_is_loaded(
    tmp_path: Path,
) -> None:
    material = os.urandom(32)
    (tmp_path / "vault.key").write_text(base64.b64encode(material).decode() + "\n")
    legacy = load_legacy_key(tmp_path, env_value=None)
    assert legacy == VaultKey(legacy_key_id(material), material)
    storage = MemoryStorage()
    keyring = KeyringSource(Keyring("kek-1", {"kek-1": os.urandom(32)}))
    old = Vault(keyring, storage, legacy)
    sealed = old.seal_legacy("acc_1", CardNumber(PAN), T0)
    assert sealed.key_id == legacy.key_id
    assert old.open(sealed).digits == PAN
    with pytest.raises(VaultError, match="not loaded"):
        Vault(keyring, storage).open(sealed)
    with pytest.raises(VaultError, match="no legacy"):
        Vault(keyring, storage).seal_legacy("acc_1", CardNumber(PAN), T0)
    assert load_legacy_key(tmp_path / "none", env_value=None) is None  # never generated
    assert not (tmp_path / "none").exists()
    with pytest.raises(VaultKeyError, match="differs"):
        load_legacy_key(tmp_path, env_value=base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(VaultKeyError, match="not base64"):
        load_legacy_key(tmp_path, env_value="not base64!")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[", "is not JSON"),
        ("[]", "must be"),
        ('{"current": "a", "keys": {}}', "must be"),
        ('{"current": "a", "keys": {"a b": "x"}}', "is not a key id"),
        ('{"current": "a", "keys": {"a": 1}}', "base64 string"),
        ('{"current": "a", "keys": {"a": "c2hvcnQ="}}', "must be 32 bytes"),
        (keyring_doc("b", a=bytes(32)), "current must name one of its keys"),
    ],
)
def test_a_malformed_keyring_is_refused_without_showing_a_key(text: str, error: str) -> None:
    with pytest.raises(VaultKeyError, match=error) as caught:
        parse_keyring(text, "CARDKEEP_KEYRING_JSON")
    assert "c2hvcnQ" not in str(caught.value)


def test_settings_name_one_keyring_and_hide_the_inline_one(tmp_path: Path) -> None:
    doc = keyring_doc("kek-1", kek_1=os.urandom(32))
    settings = from_env({"CARDKEEP_KEYRING_JSON": doc, "CARDKEEP_ROTATION_PAUSE": "0.5"})
    assert settings.keyring_json == doc
    assert settings.rotation_pause == 0.5
    assert doc not in repr(settings)
    with pytest.raises(SettingsError, match="not both"):
        from_env({"CARDKEEP_KEYRING_JSON": doc, "CARDKEEP_KEYRING": str(tmp_path / "k")})
    with pytest.raises(SettingsError, match="ROTATION_PAUSE"):
        from_env({"CARDKEEP_ROTATION_PAUSE": "soon"})
    with pytest.raises(SettingsError, match="ROTATION_PAUSE"):
        from_env({"CARDKEEP_ROTATION_PAUSE": "-1"})
    assert keyring_source(Settings(keyring_json=doc), MemoryStorage()).get().current == "kek-1"


def test_a_sandbox_data_dir_gets_a_keyring_beside_the_data_and_a_prod_one_does_not(
    tmp_path: Path,
) -> None:
    storage = MemoryStorage()
    settings = Settings(data_dir=tmp_path / "data")
    pci = build_pci(settings, storage=storage, fingerprint_secret=os.urandom(32))
    path = tmp_path / "data" / "keyring.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert pci.vault.keyring.get().current.startswith("kek-")
    pci.services.accounts.create("platform", Mode.PROD)
    assert keyring_source(settings, storage).path == path  # kept for the other commands
    with pytest.raises(VaultKeyError, match="prod account"):  # but none is generated any more
        build_pci(replace(settings, data_dir=tmp_path / "other"), storage=storage)
    with pytest.raises(VaultKeyError, match="prod account"):
        check_prod_keyring(settings, storage)
    with pytest.raises(VaultKeyError, match="inside the data directory"):
        check_prod_keyring(replace(settings, keyring=path), storage)
    outside = tmp_path / "keys.json"
    write_keyring(outside, Keyring("kek-1", {"kek-1": os.urandom(32)}))
    check_prod_keyring(replace(settings, keyring=outside), storage)
    outside.chmod(0o640)
    with pytest.raises(VaultKeyError, match="readable by group or others"):
        check_prod_keyring(replace(settings, keyring=outside), storage)
    with pytest.raises(VaultKeyError, match="cannot read"):
        check_prod_keyring(replace(settings, keyring=tmp_path / "missing.json"), storage)
    check_prod_keyring(replace(settings, keyring_json=keyring_doc("a", a=os.urandom(32))), storage)


def test_start_is_refused_when_stored_deks_need_a_kek_the_keyring_lacks(tmp_path: Path) -> None:
    world = World()
    world.authorized()
    elsewhere = KeyringSource(Keyring("kek-2", {"kek-2": os.urandom(32)}))
    with pytest.raises(VaultKeyError, match=r"wrapped under KEKs \['kek-1'\]"):
        _check_vault_key(world.storage, Vault(elsewhere, world.storage))
    _check_vault_key(world.storage, world.vault)
    settings = Settings(data_dir=tmp_path, vault_key=base64.b64encode(os.urandom(32)).decode())
    assert vault_for(settings, world.storage).legacy_key_id is not None
