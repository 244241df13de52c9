"""Acceptance: ``cardkeep purge --older-than 0`` on a real server's database, on SQLite and
PostgreSQL. After a charged flow and a live card with distinct names, emails and addresses, the
purge scrubs the charged pair: on SQLite the raw database file and its WAL (checkpointed and
truncated) no longer hold that customer's details, and the masked card only in the append-only
audit log; on PostgreSQL the rows no longer hold them. The live card keeps everything and can
still be charged; the purged payment intent can still be refunded and answers valid documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.contract.schemas import errors_of
from tests.e2e.harness import Merchant, Server, run_server

GONE = {
    "name": "Quentin Purgewhistle",
    "email": "quentin.purgewhistle@example.com",
    "street": "88 Forgettable Row",
    "ship": "Oblivion House",
    "agent": "PurgeAgentBrowser/9.9",
}
KEPT = {"name": "Livia Keepsake", "email": "livia.keepsake@example.com"}
GONE_CARD, GONE_MASKED = "5200000000001096", "520000******1096"


def _person(who: dict[str, str]) -> dict[str, Any]:
    address = {"address1": who.get("street", "1 High St"), "city": "Leeds", "countryCode": "GB"}
    return {
        "customer": {"emailAddress": who["email"]},
        "billingAddress": address,
        "shippingDetails": {"name": who.get("ship", "Home"), "address": address},
    }


def _si(m: Merchant, pan: str, who: dict[str, str]) -> str:
    r = m.pci.post(
        "/setup-intents",
        json={
            "reference": "Table 4",
            "merchantInitiatedTransactionType": "NoShow",
            "terms": "No-show fee.",
            "cardDetails": {
                "cardNumber": pan,
                "cardName": who["name"],
                "expiryDate": "12/35",
                "cv2": "020",
            },
            **_person(who),
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _pi(m: Merchant, si: str, who: dict[str, str]) -> str:
    r = m.api.post(
        "/payment-intents",
        json={
            "amount": {"value": 1000, "currencyCode": "GBP"},
            "reference": "No-show",
            "setupIntentId": si,
            "requestSecurity": {"userAgent": who.get("agent", "Browser"), "ipAddress": "192.0.2.9"},
            **_person(who),
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _purge(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    where = ["--data-dir", str(server.data_dir)]
    if server.database_url:
        where += ["--database-url", server.database_url]
    return subprocess.run(
        [sys.executable, "-m", "cardkeep", "purge", *args, *where],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _rows_text(server: Server) -> str:
    rows = server.sql("SELECT doc FROM setup_intents") + server.sql(
        "SELECT doc FROM payment_intents"
    )
    return "".join(bytes(row[0]).decode() for row in rows)


def test_purge_scrubs_a_final_flow_from_the_database(
    tmp_path: Path, database_url: str | None
) -> None:
    with run_server(tmp_path / "data", database_url=database_url) as server:
        m = Merchant(server, server.create_account())
        try:
            done_si = _si(m, GONE_CARD, GONE)
            done_pi = _pi(m, done_si, GONE)
            assert m.charge(done_pi).json()["status"] == "Successful"
            live_si = _si(m, "5200000000001005", KEPT)
            assert all(text in _rows_text(server) for text in (*GONE.values(), *KEPT.values()))

            dry = _purge(server, "--older-than", "0", "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "would purge setup intents: 1" in dry.stdout
            assert GONE["email"] in _rows_text(server)

            run = _purge(server, "--older-than", "0")
            assert run.returncode == 0, run.stderr
            assert run.stdout.splitlines() == [
                "purged setup intents: 1",
                "purged payment intents: 1",
                "deleted vault cards: 0",
            ]
            again = _purge(server, "--older-than", "0")
            assert "purged payment intents: 0" in again.stdout

            rows = _rows_text(server)
            assert not [text for text in (*GONE.values(), GONE_MASKED) if text in rows]
            assert all(text in rows for text in KEPT.values())
            pi = m.api.get(f"/payment-intents/{done_pi}").json()
            assert not errors_of("PaymentIntent", pi), errors_of("PaymentIntent", pi)
            assert (pi["status"], pi["amount"]["value"], pi["refundedAmount"]) == (
                "Captured",
                1000,
                0,
            )
            refund = m.api.post(
                f"/payment-intents/{done_pi}/refunds",
                json={"amount": 400},
                headers={"idempotencyKey": "after-purge"},
            )
            assert refund.status_code == 200, refund.text
            assert m.api.get(f"/payment-intents/{done_pi}").json()["refundedAmount"] == 400
            si = m.get_si(done_si).json()
            assert not errors_of("SetupIntentResponse", si), errors_of("SetupIntentResponse", si)
            live_pi = _pi(m, live_si, KEPT)
            assert m.charge(live_pi).json()["status"] == "Successful"

            if database_url is None:
                assert _purge(server, "--older-than", "0").returncode == 0
                raw = server.stored_bytes()  # the database file, its WAL and SHM, the key files
                assert not [t for t in GONE.values() if t.encode() in raw]
                audited = server.sql(
                    "SELECT count(*) FROM audit_log WHERE detail LIKE ?", (f"%{GONE_MASKED}%",)
                )[0][0]
                assert audited >= 1  # card.authorization keeps the masked card (append-only)
                assert raw.count(GONE_MASKED.encode()) == audited
        finally:
            m.close()
