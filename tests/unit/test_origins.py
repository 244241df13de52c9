"""The origins an account allows to frame the hosted card page (CONTRACT §9): normalisation, the
prod https rule, the sandbox default, and the match a browser's ``event.origin`` must pass."""

from __future__ import annotations

import pytest

from cardkeep.domain.account import Mode
from cardkeep.domain.errors import NotFound, ValidationFailed
from cardkeep.domain.origins import MAX_ORIGINS, allows, effective, normalise, normalise_all
from tests.world import World

P, S = Mode.PROD, Mode.SANDBOX


def test_origins_are_normalised() -> None:
    assert normalise("HTTPS://Shop.Example.COM:443/", P) == "https://shop.example.com"
    assert normalise("https://shop.example.com:8443", P) == "https://shop.example.com:8443"
    assert normalise("http://localhost:80", S) == "http://localhost"
    assert normalise("http://[::1]:3000", S) == "http://[::1]:3000"
    assert normalise_all(["https://a.example", "https://A.example/"], P) == ("https://a.example",)


@pytest.mark.parametrize(
    ("origin", "mode"),
    [
        ("http://shop.example.com", P),  # prod: https only
        ("ftp://shop.example.com", S),
        ("https://shop.example.com/path", P),
        ("https://shop.example.com?q=1", P),
        ("https://user@shop.example.com", P),
        ("https://", P),
        ("https://shop.example.com:99999", P),
        ("shop.example.com", P),
    ],
)
def test_what_is_not_an_allowed_origin(origin: str, mode: Mode) -> None:
    with pytest.raises(ValidationFailed):
        normalise(origin, mode)


def test_at_most_twenty() -> None:
    many = [f"https://s{i}.example" for i in range(MAX_ORIGINS + 1)]
    with pytest.raises(ValidationFailed):
        normalise_all(many, P)


def test_the_sandbox_default_and_the_match() -> None:
    assert effective((), S) == ("http://localhost:*", "http://127.0.0.1:*")
    assert effective((), P) == ()
    for origin in ("http://localhost:5173", "http://127.0.0.1:8000", "http://localhost"):
        assert allows(origin, (), S), origin
    for origin in ("http://localhost.evil.example", "http://127.0.0.1.evil:80", "https://x.test"):
        assert not allows(origin, (), S), origin
    assert not allows("http://localhost:5173", (), P)  # prod has no default
    listed = ("https://shop.example.com",)
    assert allows("https://shop.example.com", listed, P)
    assert allows("https://shop.example.com:443", listed, P)
    assert not allows("https://shop.example.com:8443", listed, P)
    assert not allows("https://evil.example", listed, P)
    assert not allows("null", listed, P)
    assert not allows("http://localhost:3000", listed, S)  # a list replaces the default


def test_the_account_keeps_its_list() -> None:
    world = World()
    accounts = world.services.accounts
    assert accounts.origins(world.account.id)[1] == ()
    assert accounts.set_origins(
        world.account.id, ["https://Shop.example", "http://localhost:3000"]
    ) == (
        "https://shop.example",
        "http://localhost:3000",
    )
    assert accounts.origins(world.account.id)[1] == (
        "https://shop.example",
        "http://localhost:3000",
    )
    assert accounts.set_origins(world.account.id, []) == ()
    with pytest.raises(NotFound):
        accounts.set_origins("acc_nope", ["https://a.example"])
    with pytest.raises(NotFound):
        accounts.origins("acc_nope")
