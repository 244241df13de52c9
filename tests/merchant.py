"""What a merchant sends, over any pair of clients: the request bodies and the requests the flow
needs. The real-HTTP ``Merchant`` (``tests/e2e/harness.py``) and the in-process one
(``tests/world.py``) differ only in the clients they hand to ``MerchantRequests``."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

VERSION = "2025-09-10"
APPROVED_CARD = "5200000000001005"
DECLINED_CARD = "4000000000000002"
TEST_PANS = (
    "5200000000001005",
    "5200000000000056",
    "5200000000001096",
    "4456530000001013",
    "4000000000000002",
    "4000000000009995",
)

SI_FIELDS: dict[str, Any] = {
    "reference": "Table 4",
    "merchantInitiatedTransactionType": "NoShow",
    "terms": "In case of no-show, the customer authorizes us to charge the table booking fee.",
    "intendedAmount": {"value": 1000, "currencyCode": "GBP"},
}


def card(number: str = APPROVED_CARD, expiry: str = "12/39", cv2: str = "020") -> dict[str, str]:
    return {"cardNumber": number, "cardName": "Test Cardholder", "expiryDate": expiry, "cv2": cv2}


class Client(Protocol):
    """What the requests below need of a client; ``httpx.Client`` and ``tests.world.SyncClient``
    both are one (subclasses narrow ``api``/``pci`` to the one they use)."""

    def get(self, url: str) -> httpx.Response: ...

    def post(self, url: str, *, json: Any = None) -> httpx.Response: ...

    def close(self) -> None: ...


class MerchantRequests:
    """One account's view of both listeners (``api``, ``pci``, sending its ``key``), with the
    requests the flow needs."""

    def __init__(self, api: Client, pci: Client, key: str) -> None:
        self.api = api
        self.pci = pci
        self.key = key

    def close(self) -> None:
        self.api.close()
        self.pci.close()

    def pci_create(
        self, card_details: dict[str, str] | None = None, **fields: Any
    ) -> httpx.Response:
        body = {**SI_FIELDS, **fields, "cardDetails": card_details or card()}
        return self.pci.post("/setup-intents", json=body)

    def authorized_si(self, **fields: Any) -> dict[str, Any]:
        r = self.pci_create(**fields)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Authorized"
        return r.json()  # type: ignore[no-any-return]

    def create_si(self, **fields: Any) -> httpx.Response:
        return self.api.post("/setup-intents", json={**SI_FIELDS, **fields})

    def get_si(self, si_id: str) -> httpx.Response:
        return self.api.get(f"/setup-intents/{si_id}")

    def create_pi(
        self, si_id: str | None, value: int = 1000, currency: str = "GBP", **fields: Any
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "amount": {"value": value, "currencyCode": currency},
            "reference": "No-show fee",
            **fields,
        }
        if si_id is not None:
            body["setupIntentId"] = si_id
        return self.api.post("/payment-intents", json=body)

    def charge(self, pi_id: str) -> httpx.Response:
        return self.api.post(f"/payment-intents/{pi_id}/charge")

    def advance(self, seconds: int) -> httpx.Response:
        return self.api.post("/sandbox/clock/advance", json={"seconds": seconds})
