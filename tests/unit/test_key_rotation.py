"""Online rotation of the vault's keys in process: KEKs rewrapped, DEKs replaced and cards
re-sealed in batches with conditional writes, legacy cards moved off the legacy key, and nothing
retired while anything uses it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardkeep.cde.keys import Keyring, KeyringSource, VaultKey, legacy_key_id, write_keyring
from cardkeep.cde.rotation import Rotation, RotationError
from cardkeep.cde.vault import Vault
from cardkeep.cde.vault_store import SealedCard
from tests.world import World

PAN = "5200000000001005"


def keyring_file(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    path = tmp_path / "keyring.json"
    k1, k2 = os.urandom(32), os.urandom(32)
    write_keyring(path, Keyring("kek-1", {"kek-1": k1, "kek-2": k2}))
    return path, k1, k2


def charge(world: World, si_id: str) -> str:
    return world.services.payment_intents.charge(world.account, world.pi(si_id)).status


def test_rotating_the_kek_rewraps_every_dek_and_then_the_old_kek_retires(tmp_path: Path) -> None:
    path, _, _ = keyring_file(tmp_path)
    world = World(keyring=KeyringSource.file(path))
    sis = [world.authorized() for _ in range(3)]
    lines: list[str] = []
    rotation = Rotation(
        world.storage, world.vault, batch=1, progress=lines.append, sleep=lambda s: None
    )
    with pytest.raises(RotationError, match="no key kek-9"):
        rotation.rotate_kek("kek-9")
    with pytest.raises(RotationError, match="current KEK"):
        rotation.retire("kek-1")
    assert world.vault.keyring.set_current("kek-2")  # current, but nothing rewrapped yet
    with pytest.raises(RotationError, match="1 data-encryption keys are still wrapped under kek-1"):
        rotation.retire("kek-1")
    report = rotation.rotate_kek("kek-2")
    assert report.made_current
    assert report.keys_rewrapped == 1
    assert lines == [
        f"kek-2 is now current in {path}",
        "rewrapped 1 data-encryption keys under kek-2",
    ]
    assert KeyringSource.file(path).get().current == "kek-2"
    assert {row[2] for row in world.storage.tables.deks.values()} == {"kek-2"}
    assert all(charge(world, si) == "Successful" for si in sis)
    again = rotation.rotate_kek("kek-2")  # resumable: nothing left to do
    assert again.keys_rewrapped == 0
    with pytest.raises(RotationError, match="current KEK"):
        rotation.retire("kek-2")
    assert "removed from" in rotation.retire("kek-1")
    assert set(KeyringSource.file(path).get().keys) == {"kek-2"}
    with pytest.raises(RotationError, match="no key kek-1"):
        rotation.retire("kek-1")


def test_rotating_deks_reseals_every_card_and_retires_the_old_dek() -> None:
    world = World()
    sis = [world.authorized() for _ in range(5)]
    old = {row[2] for row in world.storage.tables.vault.values()}
    assert len(old) == 1
    (old_dek,) = old
    rotation = Rotation(world.storage, world.vault, batch=2)
    with pytest.raises(RotationError, match="current data-encryption key"):
        rotation.retire(old_dek)
    report = rotation.rotate_deks()
    assert (report.deks_made, report.cards_resealed, report.deks_retired) == (1, 5, 1)
    new = {row[2] for row in world.storage.tables.vault.values()}
    assert len(new) == 1
    assert new != old
    assert world.storage.tables.deks[old_dek][4] == "retired"
    assert all(charge(world, si) == "Successful" for si in sis[:4])
    uses = {use.key_id: use for use in rotation.list()}
    assert uses[old_dek].used_by == "0 cards"
    assert uses[old_dek].status.startswith("retired")
    assert uses["kek-1"].status == "current"
    assert "wrapped key is deleted" in rotation.retire(old_dek)
    assert old_dek not in world.storage.tables.deks
    assert charge(world, sis[4]) == "Successful"


def test_a_card_changed_during_a_batch_is_skipped_not_overwritten() -> None:
    world = World()
    si_id = world.authorized()
    (token,) = world.storage.tables.vault
    rotation = Rotation(world.storage, world.vault)
    real_open = world.vault.open

    def forgotten_meanwhile(card: SealedCard):  # type: ignore[no-untyped-def]
        pan = real_open(card)
        world.services.setup_intents.delete(world.account, si_id, include_authorized=True)
        return pan

    world.vault.open = forgotten_meanwhile  # type: ignore[method-assign]
    report = rotation.rotate_deks()
    assert (report.cards_resealed, report.cards_skipped) == (0, 1)
    assert token not in world.storage.tables.vault  # not written back
    assert report.deks_retired == 1


def test_cards_sealed_under_the_legacy_key_charge_and_move_to_deks() -> None:
    world = World()
    sis = [world.authorized() for _ in range(3)]
    material = os.urandom(32)
    legacy = VaultKey(legacy_key_id(material), material)
    # The data as the release before envelope encryption left it: every card under the one key.
    for token, row in list(world.storage.tables.vault.items()):
        nonce = os.urandom(12)
        ct = AESGCM(material).encrypt(
            nonce, PAN.encode(), f"cardkeep-vault-v1|{token}|{row[1]}".encode()
        )
        world.storage.tables.vault[token] = (token, row[1], legacy.key_id, nonce, ct, row[5])
    world.storage.tables.deks.clear()
    upgraded = Vault(world.keyring, world.storage, legacy)
    world.pci.charger._vault = upgraded
    assert charge(world, sis[0]) == "Successful"
    rotation = Rotation(world.storage, upgraded)
    with pytest.raises(RotationError, match="still sealed under the legacy key"):
        rotation.retire(legacy.key_id)
    assert [u.status for u in rotation.list() if u.kind == "legacy"] == ["loaded"]
    report = rotation.rotate_deks()
    assert report.cards_resealed == 2
    assert all(row[2].startswith("dek_") for row in world.storage.tables.vault.values())
    assert "no longer used" in rotation.retire(legacy.key_id)
    world.pci.charger._vault = Vault(world.keyring, world.storage)  # the legacy key removed
    assert all(charge(world, si) == "Successful" for si in sis[1:])
    with pytest.raises(RotationError, match="no key"):
        Rotation(world.storage, Vault(world.keyring, world.storage)).retire(legacy.key_id)
