"""Both apps built by the composition root over the in-memory storage, driven over HTTP in process:
the seed flow end to end, and what the PCI create records."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardkeep.bootstrap import build_api, build_pci
from cardkeep.cde.intake import CardInput
from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.config import Settings
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.money import Money
from cardkeep.domain.setup_intent import Status as SI
from cardkeep.service.payment_intents import NewPaymentIntent
from cardkeep.service.setup_intents import NewSetupIntent
from cardkeep.storage.memory import MemoryStorage
from tests.world import World

SI_FIELDS = {
    "reference": "Table 4",
    "merchantInitiatedTransactionType": "NoShow",
    "terms": "In case of no-show, the customer authorizes us to charge the table booking fee.",
    "intendedAmount": {"value": 1000, "currencyCode": "GBP"},
}


def card(number: str = "5200000000001005", expiry: str = "12/39") -> dict[str, str]:
    return {"cardNumber": number, "cardName": "Test Cardholder", "expiryDate": expiry, "cv2": "020"}


def test_the_seed_flow_in_process() -> None:
    world = World()
    api, pci = world.clients()
    try:
        r = pci.post("/setup-intents", json={**SI_FIELDS, "cardDetails": card()})
        assert r.status_code == 200, r.text
        si = r.json()
        assert si["status"] == "Authorized"
        assert si["paymentDetails"]["card"]["cardNumber"] == "520000******1005"
        r = api.post(
            "/payment-intents",
            json={
                "amount": {"value": 1000, "currencyCode": "GBP"},
                "reference": "No-show fee",
                "setupIntentId": si["id"],
            },
        )
        assert r.status_code == 200, r.text
        pi = r.json()
        assert pi["status"] == "Created"
        r = api.post(f"/payment-intents/{pi['id']}/charge")
        assert r.json() == {
            "paymentIntentId": pi["id"],
            "status": "Successful",
            "message": "DEPOSITED",
        }
        assert api.get(f"/payment-intents/{pi['id']}").json()["status"] == "Captured"
        assert api.get(f"/setup-intents/{si['id']}").json()["status"] == "Completed"
        again = api.post(f"/payment-intents/{pi['id']}/charge")
        assert (again.status_code, again.json()["code"]) == (400, "invalid_state")
        assert world.acquirer.times_sent(f"charge:{pi['id']}:1") == 1  # type: ignore[attr-defined]
        assert world.events() == [
            ("setup_intent.created", "Authorized"),
            ("payment_intent.created", "Created"),
            ("payment_intent.status_updated", "Captured"),
            ("setup_intent.status_updated", "Completed"),
        ]
        assert world.storage.tables.vault == {}  # the used card left the vault
    finally:
        api.close()
        pci.close()


@pytest.mark.parametrize(
    ("number", "expiry", "status"),
    [
        ("5200000000001005", "12/39", SI.AUTHORIZED),
        ("4000000000000002", "12/39", SI.CREATED),
        ("5200000000001005", "01/20", SI.CARD_EXPIRED),
    ],
)
def test_a_pci_create_records_exactly_one_created_event_with_the_final_status(
    number: str, expiry: str, status: SI
) -> None:
    world = World()
    _, pci = world.clients()
    try:
        r = pci.post("/setup-intents", json={**SI_FIELDS, "cardDetails": card(number, expiry)})
    finally:
        pci.close()
    assert r.status_code == 200, r.text
    assert r.json()["status"] == status.value
    assert world.events() == [("setup_intent.created", status.value)]
    kept = 1 if status is SI.AUTHORIZED else 0
    assert len(world.storage.tables.vault) == kept


def test_build_api_alone_charges_through_an_in_process_charger(tmp_path: Path) -> None:
    """Without a charger, the API side builds the PCI side's in this process (one-process mode):
    the vault's keyring comes from the data directory (generated, sandbox), as ``serve`` does it;
    no legacy ``vault.key`` is made any more."""
    settings = Settings(data_dir=tmp_path)
    storage = MemoryStorage()
    pci = build_pci(settings, storage=storage)
    api = build_api(settings, storage=storage)
    account, _, _ = api.services.accounts.create("m", Mode.SANDBOX)
    cmd = NewSetupIntent("r", "t", "NoShow")
    card_input = CardInput(CardNumber("5200000000001005"), Expiry(12, 2030), Cvv("123", None), None)
    si = pci.intake.create(account, cmd, card_input)
    pi = api.services.payment_intents.create(
        account, NewPaymentIntent(Money(1000, "GBP"), "fee", setup_intent_id=si.id)
    )
    assert api.services.payment_intents.charge(account, pi.id).status == "Successful"
    assert (tmp_path / "keyring.json").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "vault.key").exists()
    api.close()
    pci.close()
