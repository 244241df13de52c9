"""API keys in process: each has a public id; another key works beside the first; a revoked key
(named by its id or by the secret itself) is refused on the very next request, on both listeners,
while the account's other keys keep working."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest

from cardkeep.domain.account import Mode
from cardkeep.domain.errors import NotFound, Unauthorized
from tests.bad_input import problem
from tests.merchant import SI_FIELDS
from tests.world import T0, World

KEY_ID = re.compile(r"key_[A-Za-z0-9_-]{22}")


@pytest.fixture
def world() -> World:
    return World()


def _works(world: World, key: str) -> None:
    merchant = world.merchant(key)
    try:
        assert merchant.create_si().status_code == 200
        assert merchant.pci_create().status_code == 200
        assert merchant.api.get("/sandbox/clock").status_code == 200
    finally:
        merchant.close()


def _refused(world: World, key: str) -> None:
    merchant = world.merchant(key)
    try:
        problem(merchant.create_si(), 401, "unauthorized")
        problem(merchant.pci_create(), 401, "unauthorized")
        problem(merchant.api.get("/sandbox/clock"), 401, "unauthorized")
    finally:
        merchant.close()


def test_keys_show_ids_and_dates_never_the_secret_or_its_hash(world: World) -> None:
    keys = world.services.accounts.keys(world.account.id)
    assert [(k.id, k.account_id, k.created_at, k.revoked_at) for k in keys] == [
        (world.key_id, world.account.id, T0, None)
    ]
    assert KEY_ID.fullmatch(world.key_id)
    shown = repr(keys)
    secret_hash = hashlib.sha256(world.key.encode()).hexdigest()
    for hidden in (world.key, world.key.split("_", 2)[2], secret_hash):
        assert hidden not in shown


def test_a_new_key_works_beside_the_first(world: World) -> None:
    accounts = world.services.accounts
    world.advance(seconds=5)
    key_id, key = accounts.new_key(world.account.id)
    assert KEY_ID.fullmatch(key_id)
    assert key_id != world.key_id
    assert re.fullmatch(r"sk_sandbox_[A-Za-z0-9_-]{43}", key)
    assert key != world.key
    assert accounts.authenticate(key) == accounts.authenticate(world.key) == world.account
    listed = accounts.keys(world.account.id)
    assert [(k.id, k.created_at) for k in listed] == [
        (world.key_id, T0),
        (key_id, T0 + timedelta(seconds=5)),
    ]
    _works(world, key)
    _works(world, world.key)


def test_a_prod_accounts_new_key_is_a_prod_key(world: World) -> None:
    accounts = world.services.accounts
    prod, first_id, _ = accounts.create("platform", Mode.PROD)
    world.advance(seconds=1)
    key_id, key = accounts.new_key(prod.id)
    assert key.startswith("sk_prod_")
    assert accounts.authenticate(key) == prod
    assert [k.id for k in accounts.keys(prod.id)] == [first_id, key_id]
    assert [k.id for k in accounts.keys(world.account.id)] == [world.key_id]


@pytest.mark.parametrize("by", ["id", "secret"])
def test_a_revoked_key_is_refused_on_the_next_request_and_the_other_still_works(
    world: World, by: str
) -> None:
    accounts = world.services.accounts
    other_id, other = accounts.new_key(world.account.id)
    _works(world, world.key)  # a request before: accepted
    world.advance(seconds=30)
    revoked = accounts.revoke_key(world.key_id if by == "id" else world.key)
    assert (revoked.id, revoked.revoked_at) == (world.key_id, T0 + timedelta(seconds=30))
    _refused(world, world.key)
    with pytest.raises(Unauthorized):
        accounts.authenticate(world.key)
    _works(world, other)
    listed = {k.id: k.revoked_at for k in accounts.keys(world.account.id)}
    assert listed == {world.key_id: T0 + timedelta(seconds=30), other_id: None}


def test_an_idempotent_replay_does_not_outlive_the_revocation(world: World) -> None:
    """An answer kept under an Idempotency-Key is not served to a revoked key: the key is checked
    before any replay."""
    merchant = world.merchant()
    headers = {"Idempotency-Key": "same-request"}
    body = SI_FIELDS
    try:
        first = merchant.api.post("/setup-intents", json=body, headers=headers)
        assert first.status_code == 200
        assert (
            merchant.api.post("/setup-intents", json=body, headers=headers).json() == first.json()
        )
        world.services.accounts.revoke_key(world.key_id)
        problem(
            merchant.api.post("/setup-intents", json=body, headers=headers), 401, "unauthorized"
        )
    finally:
        merchant.close()


def test_revoking_twice_keeps_the_first_revocation(world: World) -> None:
    accounts = world.services.accounts
    first = accounts.revoke_key(world.key_id)
    world.advance(hours=1)
    assert accounts.revoke_key(world.key_id) == first
    assert accounts.revoke_key(world.key) == first
    assert accounts.keys(world.account.id) == (first,)
    _refused(world, world.key)


def test_unknown_keys_and_accounts_are_not_found(world: World) -> None:
    accounts = world.services.accounts
    unknown_secret = "sk_sandbox_" + "A" * 43
    mistyped = world.key[1:]  # a secret key that lost its first character
    other_case = "key_" + world.key_id[4:].swapcase()  # ids are case-sensitive
    for wrong, detail in (
        ("key_nope", "No API key with id key_nope."),
        (other_case, f"No API key with id {other_case}."),
        ("", "No API key with that id or secret key."),
        (unknown_secret, "No API key with that secret key."),
        (mistyped, "No API key with that id or secret key."),  # not echoed either
    ):
        with pytest.raises(NotFound) as raised:
            accounts.revoke_key(wrong)
        assert raised.value.detail == detail
    with pytest.raises(NotFound):
        accounts.revoke_key("key_\x00")
    for missing in ("acc_nope", "acc_\x00"):
        with pytest.raises(NotFound):
            accounts.keys(missing)
        with pytest.raises(NotFound):
            accounts.new_key(missing)
    # nothing was revoked or added by the refusals
    assert [(k.id, k.revoked_at) for k in accounts.keys(world.account.id)] == [(world.key_id, None)]
    _works(world, world.key)
