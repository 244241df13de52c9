"""The vault's key table (``vault_deks``) and the rotation's card access, against their contract on
every engine: one current key per account, conditional rewraps and re-seals, retiring only what no
card uses."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cardkeep.cde import vault_store
from cardkeep.cde.vault_store import Dek, DekStatus, SealedCard
from cardkeep.domain.errors import Conflict
from cardkeep.service.ports import Storage
from tests.factories import T0
from tests.integration.conftest import ACCOUNT


def dek(id_: str, kek: str = "kek-1", status: DekStatus = DekStatus.CURRENT) -> Dek:
    return Dek(id_, ACCOUNT.id, kek, b"wrapped-" + id_.encode(), status, T0)


def card(token: str, key_id: str) -> SealedCard:
    return SealedCard(token, ACCOUNT.id, key_id, b"n" * 12, b"ct-" + token.encode(), T0)


def test_a_dek_round_trips_and_one_account_has_one_current(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        vault_store.add_dek(uow, dek("dek_a"))
        uow.commit()
    with storage.transaction(write=True) as uow:  # a lock is taken in a write transaction
        assert vault_store.get_dek(uow, "dek_a") == dek("dek_a")
        assert vault_store.current_dek(uow, ACCOUNT.id, lock=True) == dek("dek_a")
        assert vault_store.get_dek(uow, "dek_none") is None
        assert vault_store.get_dek(uow, "dek_\x00") is None
    with pytest.raises(Conflict), storage.transaction(write=True) as uow:
        vault_store.add_dek(uow, dek("dek_b"))  # a second current one for the account
        uow.commit()
    with storage.transaction(write=True) as uow:
        rows = vault_store.rows(uow)
        rows.dek_replace_current(ACCOUNT.id, vault_store.dek_row(dek("dek_b", "kek-2")))
        uow.commit()
    with storage.transaction(write=False) as uow:
        rows = vault_store.rows(uow)
        assert vault_store.current_dek(uow, ACCOUNT.id) == dek("dek_b", "kek-2")
        assert vault_store.get_dek(uow, "dek_a") == dek("dek_a", status=DekStatus.PREVIOUS)
        assert rows.kek_counts() == {"kek-1": 1, "kek-2": 1}
        assert [r[0] for r in rows.deks("", 10)] == ["dek_a", "dek_b"]
        assert [r[0] for r in rows.deks("dek_a", 10)] == ["dek_b"]
        assert [r[0] for r in rows.deks_not_under("kek-2", "", 10)] == ["dek_a"]
        assert rows.dek_accounts("", 10) == [ACCOUNT.id]
        assert rows.dek_accounts(ACCOUNT.id, 10) == []


def test_a_rewrap_and_a_reseal_are_conditional(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        vault_store.add_dek(uow, dek("dek_a"))
        vault_store.put(uow, card("vt_1", "dek_a"))
        vault_store.put(uow, card("vt_2", "legacy0123456789"))
        uow.commit()
    with storage.transaction(write=True) as uow:
        rows = vault_store.rows(uow)
        assert rows.dek_rewrap("dek_a", "kek-1", "kek-2", b"rewrapped")
        assert not rows.dek_rewrap("dek_a", "kek-1", "kek-3", b"late")  # already moved
        assert vault_store.reseal(uow, "legacy0123456789", card("vt_2", "dek_a"))
        assert not vault_store.reseal(uow, "legacy0123456789", card("vt_2", "dek_x"))
        assert not vault_store.reseal(uow, "dek_a", card("vt_gone", "dek_x"))
        uow.commit()
    with storage.transaction(write=False) as uow:
        rows = vault_store.rows(uow)
        stored = vault_store.get_dek(uow, "dek_a")
        assert stored is not None
        assert (stored.kek_id, stored.wrapped) == ("kek-2", b"rewrapped")
        assert vault_store.get(uow, "vt_2") == card("vt_2", "dek_a")
        assert rows.card_counts() == {"dek_a": 2}
        assert vault_store.cards_not_under(uow, ACCOUNT.id, "dek_a", "", 10) == []
        assert [c.token for c in vault_store.cards_not_under(uow, ACCOUNT.id, "dek_b", "", 10)] == [
            "vt_1",
            "vt_2",
        ]
        assert [
            c.token for c in vault_store.cards_not_under(uow, ACCOUNT.id, "dek_b", "vt_1", 1)
        ] == ["vt_2"]


def test_only_a_dek_no_card_uses_is_retired_or_deleted(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        vault_store.add_dek(uow, dek("dek_a"))
        vault_store.put(uow, card("vt_1", "dek_a"))
        rows = vault_store.rows(uow)
        rows.dek_replace_current(ACCOUNT.id, vault_store.dek_row(dek("dek_b")))
        uow.commit()
    with storage.transaction(write=True) as uow:
        rows = vault_store.rows(uow)
        assert rows.dek_retire_unused(ACCOUNT.id) == []  # vt_1 still uses dek_a
        assert not rows.dek_delete_unused("dek_a")
        assert not rows.dek_delete_unused("dek_b")  # current
        assert vault_store.reseal(uow, "dek_a", card("vt_1", "dek_b"))
        assert rows.dek_retire_unused(ACCOUNT.id) == ["dek_a"]
        uow.commit()
    with storage.transaction(write=True) as uow:
        rows = vault_store.rows(uow)
        retired = vault_store.get_dek(uow, "dek_a")
        assert retired is not None
        assert retired.status is DekStatus.RETIRED
        assert rows.dek_delete_unused("dek_a")
        assert not rows.dek_delete_unused("dek_a")
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert vault_store.get_dek(uow, "dek_a") is None
        assert vault_store.rows(uow).kek_counts() == {"kek-1": 1}


def test_a_dek_needs_its_account(storage: Storage) -> None:
    orphan = Dek("dek_o", "acc_nobody", "kek-1", b"w", DekStatus.CURRENT, T0 + timedelta(1))
    with pytest.raises(Conflict), storage.transaction(write=True) as uow:
        vault_store.add_dek(uow, orphan)
        uow.commit()
