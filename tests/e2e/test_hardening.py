"""Regression tests for what an attack on the foundation found (a hostile tenant, a PCI assessor):
each over real HTTP against a real server, or on the raw database, the process table or a socket,
where the fault showed."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.contract.schemas import errors_of
from tests.e2e.harness import APPROVED_CARD, Merchant, Server, card, run_server

SPELLINGS = (
    "5200000000001005",
    "5200 0000 0000 1005",
    "5200-0000-0000-1005",
    "5200.0000.0000.1005",
    "5200_0000_0000_1005",
    "5200\t0000\t0000\t1005",
    "378282246310005",  # AMEX: refused whatever the account accepts
)


def _refused(r: httpx.Response, field: str) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == "card_data_not_accepted", body
    assert field in body["detail"], body
    for spelling in SPELLINGS:
        assert spelling not in r.text
    return body


# -- 1. one tenant cannot stop recovery for every tenant -----------------------------------------


def test_the_sandbox_clock_moves_at_most_100_years(merchant: Merchant) -> None:
    for _ in range(10):
        assert merchant.advance(315_360_000).status_code == 200  # 10 years each
    before = merchant.api.get("/sandbox/clock").json()
    r = merchant.advance(2_160_001)  # past 3 155 760 000 s in all
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_error"
    assert merchant.api.get("/sandbox/clock").json()["offsetSeconds"] == before["offsetSeconds"]
    assert merchant.advance(2_160_000).status_code == 200  # exactly 100 years is allowed
    assert merchant.create_si().status_code == 200  # the account still works at its far future


def test_one_broken_account_stops_neither_recovery_nor_the_others(
    tmp_path: Path, database_url: str | None
) -> None:
    with run_server(tmp_path, database_url=database_url) as server:
        broken = Merchant(server, server.create_account("broken"))
        victim = Merchant(server, server.create_account("victim"))
        # Data no request can write any more (a clock past year 9999), as an older version could.
        server.sql(
            "UPDATE accounts SET clock_offset_us = ? WHERE name = 'broken'",
            (8_000 * 365 * 86_400 * 1_000_000,),
        )
        si = victim.authorized_si()
        pi = victim.create_pi(si["id"], value=1099).json()  # the acquirer's answer is lost
        assert victim.charge(pi["id"]).status_code == 503
        deadline = time.monotonic() + 15
        while victim.api.get(f"/payment-intents/{pi['id']}").json()["status"] != "Captured":
            assert time.monotonic() < deadline, "recovery never settled the victim's charge"
            time.sleep(0.1)
        assert victim.get_si(si["id"]).json()["status"] == "Completed"
        assert httpx.get(f"{server.api_url}/health").json() == {"status": "ok"}
        assert "sweep_failed_for_accounts" in server.log_text()
        broken.close()
        victim.close()


def test_health_says_degraded_while_the_sweeper_cannot_run(
    tmp_path: Path, database_url: str | None
) -> None:
    with run_server(tmp_path, database_url=database_url) as server:
        server.create_account()
        # Every sweep now fails to lease accounts; the database still answers.
        server.sql("ALTER TABLE accounts RENAME COLUMN sweep_leased_until_us TO taken")
        deadline = time.monotonic() + 10
        # Each process (the PCI process, the API worker) runs its own sweeper and says so.
        for url in (server.pci_url, server.api_url):
            while True:
                health = httpx.get(f"{url}/health")
                if health.json()["status"] == "degraded":
                    break
                assert time.monotonic() < deadline, health.text
                time.sleep(0.1)
            assert health.status_code == 200
            assert set(health.json()["loops"]) == {"sweeper"}
            assert health.json()["loops"]["sweeper"]["lastRunAt"].endswith("Z")
        server.sql("ALTER TABLE accounts RENAME COLUMN taken TO sweep_leased_until_us")
        deadline = time.monotonic() + 10
        for url in (server.pci_url, server.api_url):
            while httpx.get(f"{url}/health").json()["status"] != "ok":
                assert time.monotonic() < deadline
                time.sleep(0.1)


# -- 3. no PAN echoed in a problem body or a log line ----------------------------------------------


def test_an_id_or_key_that_looks_like_a_pan_comes_back_masked(
    merchant: Merchant, server: Server
) -> None:
    for path in (
        f"/setup-intents/{APPROVED_CARD}",
        f"/payment-intents/{APPROVED_CARD}",
        "/setup-intents/5200.0000.0000.1005",
        "/payment-intents/5200_0000_0000_1005/charge",
        "/setup-intents/5200%20%200000%20%200000%20%201005",  # double spaces: masked in logs too
    ):
        r = merchant.api.request("POST" if path.endswith("charge") else "GET", path)
        assert r.status_code == 404, r.text
        assert "520000******1005" in r.json()["detail"], r.text
        for spelling in SPELLINGS:
            assert spelling not in r.text
    # A scheme-less Luhn-valid number passes the card guard but is masked wherever it is echoed.
    r = merchant.create_si(metadata={"1000000000000008": {"nested": "object"}})
    assert r.status_code == 400, r.text
    assert "Metadata.100000******0008" in r.json()["errors"], r.text
    assert "1000000000000008" not in r.text
    time.sleep(0.3)  # the access-log line is written after the response
    log = server.log_text()
    for spelling in (*SPELLINGS, "1000000000000008", "5200  0000  0000  1005"):
        assert spelling not in log


# -- 4. no PAN stored in clear outside the vault ---------------------------------------------------


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_card_number_in_free_text_is_refused_on_both_listeners(
    merchant: Merchant, server: Server, spelling: str
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("Reference", {"reference": f"booking {spelling}"}),
        ("Description", {"description": spelling}),
        ("Terms", {"terms": f"card {spelling} ok"}),
        ("Metadata.Note", {"metadata": {"note": spelling}}),
        ("Metadata", {"metadata": {spelling: "x"}}),
        ("Customer.EmailAddress", {"customer": {"emailAddress": f"{spelling}@example.com"}}),
        (
            "BillingAddress.Address1",
            {"billingAddress": {"address1": spelling, "countryCode": "GB"}},
        ),
    ]
    for field, fields in cases:
        _refused(merchant.create_si(**fields), field)
        _refused(merchant.pci_create(**fields), field)
    _refused(
        merchant.create_pi(
            None, itemLines=[{"name": spelling, "amountTotal": {"value": 1, "currencyCode": "GBP"}}]
        ),
        "ItemLines[0].Name",
    )
    _refused(
        merchant.pci_create(card_details={**card(), "cardName": spelling}), "CardDetails.CardName"
    )
    raw = server.stored_bytes()
    assert spelling.encode() not in raw
    assert (
        spelling.replace(" ", "").replace("-", "").encode() not in raw or spelling == APPROVED_CARD
    )


def test_a_number_stored_as_json_number_is_refused_too(merchant: Merchant) -> None:
    _refused(merchant.create_si(metadata={"order": 5200000000001005}), "Metadata.Order")


def test_a_card_name_holds_no_run_of_six_digits(merchant: Merchant) -> None:
    r = merchant.pci_create(card_details={**card(), "cardName": "Jane 123456"})
    assert r.status_code == 400, r.text
    assert set(r.json()["errors"]) == {"CardDetails.CardName"}
    assert merchant.pci_create(card_details={**card(), "cardName": "Jane 12345"}).status_code == 200


# -- 5. a sealed card is forgotten when its setup intent ends ---------------------------------------


def test_no_vault_row_outlives_its_setup_intent(merchant: Merchant, server: Server) -> None:
    def vault_rows() -> int:
        return int(
            server.sql(
                "SELECT count(*) FROM vault_cards WHERE account_id = "
                "(SELECT account_id FROM setup_intents WHERE id = ?)",
                (first["id"],),
            )[0][0]
        )

    first = merchant.authorized_si()
    assert vault_rows() == 1
    merchant.charge(merchant.create_pi(first["id"]).json()["id"])  # Completed
    assert merchant.get_si(first["id"]).json()["status"] == "Completed"
    assert vault_rows() == 0
    closed = merchant.authorized_si()
    assert vault_rows() == 1
    merchant.api.delete(f"/setup-intents/{closed['id']}?includeAuthorized=true")
    assert vault_rows() == 0
    this_month = datetime.now(UTC).strftime("%m/%y")  # the card is good until this month ends
    r = merchant.pci_create(card(expiry=this_month))
    assert r.json()["status"] == "Authorized", r.text
    merchant.advance(40 * 86_400)  # the card's month has ended: CardExpired
    expired = merchant.authorized_si()
    assert vault_rows() == 2
    time.sleep(1)  # the sweeper (every 0.2 s) persists the expiry nobody read
    assert vault_rows() == 1  # the card-expired one is gone; the new one stays
    assert merchant.get_si(expired["id"]).json()["status"] == "Authorized"
    assert APPROVED_CARD.encode() not in server.stored_bytes()


# -- 6. crafted input is a 4xx, and nothing is committed before it -----------------------------------


def test_crafted_values_are_4xx_and_leave_nothing_behind(merchant: Merchant) -> None:
    before = merchant.api.get("/payment-intents/pi_sandbox_AAAAAAAAAAAAAAAAAAAAAA").status_code
    assert before == 404
    bad = [
        merchant.create_si(intendedAmount={"value": 5, "currencyCode": "ßGB"}),
        merchant.create_pi(None, currency="ßGB"),
        merchant.create_si(orderDetails={"availabilityDate": "0001-01-01T00:00:00+01:00"}),
        merchant.create_si(orderDetails={"availabilityDate": "9999-12-31T23:59:59-01:00"}),
        merchant.create_si(orderDetails={"availabilityDate": "0999-06-01T00:00:00Z"}),
        merchant.create_pi(None, expireAt="9999-12-31T23:59:59Z"),
        merchant.create_pi(None, expireAt="2035-01-01T00:00:00Z"),  # over 365 days ahead
        merchant.pci_create(card(expiry="12/9999")),
        merchant.pci_create(card(expiry="12/1999")),  # a four-digit year before 2000
    ]
    for r in bad:
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "validation_error", r.text


def test_a_client_that_hangs_up_mid_body_is_logged_as_its_doing(
    merchant: Merchant, server: Server
) -> None:
    host, port = server.api_url.removeprefix("http://").split(":")
    head = (
        "POST /setup-intents HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Basic {merchant.key}\r\nversion: 2025-09-10\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        '{"reference": '
    )
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode())
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while '"status": 400' not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log_text()
    assert "unhandled_error" not in log
    assert '"status": 500' not in log


# -- 9. smaller ----------------------------------------------------------------------------------------


def test_the_public_read_says_401_whether_or_not_the_id_exists(merchant: Merchant) -> None:
    si = merchant.create_si().json()
    answers = []
    for si_id in (si["id"], "si_sandbox_AAAAAAAAAAAAAAAAAAAAAA"):
        for auth in ("Basic wrong-secret", None):
            headers = {"version": "2025-09-10"}
            if auth:
                headers["Authorization"] = auth
            r = httpx.get(
                f"{merchant.server.api_url}/setup-intents/public/{si_id}", headers=headers
            )
            answers.append((r.status_code, r.json()["code"]))
    assert answers[:2] == answers[2:]
    assert {status for status, _ in answers} == {401}


def test_the_data_directory_is_created_owner_only(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "fresh"
    r = subprocess.run(
        [sys.executable, "-m", "cardkeep", "migrate", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert data.stat().st_mode & 0o777 == 0o700


def test_retry_after_says_when_recovery_will_have_asked(
    tmp_path: Path, database_url: str | None
) -> None:
    env = {"CARDKEEP_RECOVERY_AFTER": "30", "CARDKEEP_SWEEP_INTERVAL": "5"}
    with run_server(tmp_path, env=env, database_url=database_url) as server:
        merchant = Merchant(server, server.create_account())
        si = merchant.authorized_si()
        pi = merchant.create_pi(si["id"], value=1099).json()
        lost = merchant.charge(pi["id"])
        assert lost.status_code == 503
        assert 34 <= int(lost.headers["Retry-After"]) <= 35
        # While the outcome is unknown, reads say so (CONTRACT §5.4), valid against the spec.
        unknown = merchant.api.get(f"/payment-intents/{pi['id']}")
        assert errors_of("PaymentIntent", unknown.json()) == []
        assert unknown.json()["status"] == "Created"
        assert [e["eventType"] for e in unknown.json()["paymentEvents"]] == ["Unknown"]
        again = merchant.charge(pi["id"])
        assert again.status_code == 409
        assert again.json()["code"] == "charge_in_progress"
        assert 30 <= int(again.headers["Retry-After"]) <= 35
        other = merchant.create_pi(si["id"]).json()  # another charge of the same card
        held = merchant.charge(other["id"])
        assert held.status_code == 409
        assert 34 <= int(held.headers["Retry-After"]) <= 35
        merchant.close()


def test_a_card_field_sent_twice_is_refused(merchant: Merchant) -> None:
    body = (
        '{"reference":"r","merchantInitiatedTransactionType":"NoShow","terms":"t",'
        '"cardDetails":{"cardNumber":"5200000000001005","expiryDate":"12/39",'
        '"cv2":"123","cV2":"456"}}'
    )
    r = merchant.pci.post("/setup-intents", content=body)
    assert r.status_code == 400, r.text
    assert "CardDetails.CV2" in r.json()["errors"], r.text
    assert "456" not in r.text


# -- 8. recovery moves money exactly once, even when the acquirer never saw the first attempt ------


def _ledger(server: Server, key: str) -> list[tuple[str, str]]:
    rows = server.sql(
        "SELECT idempotency_key, result FROM sandbox_ledger WHERE idempotency_key = ?", (key,)
    )
    return [(row[0], row[1]) for row in rows]


def _claim_as_a_crash_left_it(server: Server, pi_id: str, si_id: str) -> None:
    """What a process that died between the claim and the acquirer call leaves in the database."""
    import json

    doc = json.loads(server.sql("SELECT doc FROM payment_intents WHERE id = ?", (pi_id,))[0][0])
    doc["record"].update(  # a versioned document: {"v": 1, "record": {...}}
        status="Charging", charge_attempts=1, claimed_at="2026-01-01T00:00:00+00:00"
    )
    server.sql(
        "UPDATE payment_intents SET status = 'Charging', doc = ? WHERE id = ?",
        (json.dumps(doc).encode(), pi_id),
    )
    doc = json.loads(server.sql("SELECT doc FROM setup_intents WHERE id = ?", (si_id,))[0][0])
    doc["record"]["status"] = "ChargeHeld"
    server.sql(
        "UPDATE setup_intents SET status = 'ChargeHeld', doc = ? WHERE id = ?",
        (json.dumps(doc).encode(), si_id),
    )


def _wait_for(merchant: Merchant, pi_id: str, status: str) -> None:
    deadline = time.monotonic() + 15
    while merchant.api.get(f"/payment-intents/{pi_id}").json()["status"] != status:
        assert time.monotonic() < deadline, f"{pi_id} never became {status}"
        time.sleep(0.1)


def test_a_claim_the_acquirer_never_saw_is_charged_once_by_recovery(
    tmp_path: Path, database_url: str | None
) -> None:
    with run_server(tmp_path, database_url=database_url) as server:
        key = server.create_account()
        merchant = Merchant(server, key)
        si = merchant.authorized_si()
        pi = merchant.create_pi(si["id"]).json()
        merchant.close()
    _claim_as_a_crash_left_it(server, pi["id"], si["id"])
    assert _ledger(server, f"charge:{pi['id']}:1") == []  # nothing reached the acquirer
    with run_server(tmp_path, database_url=database_url) as server:
        merchant = Merchant(server, key)
        _wait_for(merchant, pi["id"], "Captured")
        assert merchant.get_si(si["id"]).json()["status"] == "Completed"
        assert _ledger(server, f"charge:{pi['id']}:1") == [(f"charge:{pi['id']}:1", "approved")]
        merchant.close()


def test_the_acquirer_ledger_survives_a_kill_and_answers_the_resend(
    tmp_path: Path, database_url: str | None
) -> None:
    slow = {"CARDKEEP_RECOVERY_AFTER": "60"}
    with run_server(tmp_path, env=slow, database_url=database_url) as server:
        key = server.create_account()
        merchant = Merchant(server, key)
        si = merchant.authorized_si()
        pi = merchant.create_pi(si["id"], value=1099).json()  # charged, answer lost
        assert merchant.charge(pi["id"]).status_code == 503
        merchant.close()
        server.proc.kill()  # kill -9: nothing is flushed or settled on the way out
        server.proc.wait()
    ledger_key = f"charge:{pi['id']}:1"
    assert _ledger(server, ledger_key) == [(ledger_key, "approved")]
    with run_server(tmp_path, database_url=database_url) as server:  # recovery after 0.5 s now
        merchant = Merchant(server, key)
        _wait_for(merchant, pi["id"], "Captured")
        assert _ledger(server, ledger_key) == [(ledger_key, "approved")]  # charged once
        events = merchant.api.get(f"/payment-intents/{pi['id']}").json()["paymentEvents"]
        assert [e["eventType"] for e in events] == ["Captured"]
        merchant.close()


def test_an_acquirer_timeout_not_shorter_than_the_recovery_delay_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {
        **__import__("os").environ,
        "CARDKEEP_ACQUIRER_TIMEOUT": "30",
        "CARDKEEP_RECOVERY_AFTER": "30",
    }
    r = subprocess.run(
        [sys.executable, "-m", "cardkeep", "migrate", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 2
    assert "CARDKEEP_ACQUIRER_TIMEOUT must be shorter than CARDKEEP_RECOVERY_AFTER" in r.stderr


def test_a_sandbox_test_settles_an_unknown_charge_by_moving_its_clock(
    tmp_path: Path, database_url: str | None
) -> None:
    env = {"CARDKEEP_RECOVERY_AFTER": "600", "CARDKEEP_ACQUIRER_TIMEOUT": "0.5"}
    with run_server(tmp_path, env=env, database_url=database_url) as server:
        merchant = Merchant(server, server.create_account())
        si = merchant.authorized_si()
        pi = merchant.create_pi(si["id"], value=1099).json()
        assert merchant.charge(pi["id"]).status_code == 503
        time.sleep(1)  # a sweep or two: the 10-minute delay has not passed
        assert merchant.api.get(f"/payment-intents/{pi['id']}").json()["status"] == "Created"
        assert merchant.advance(601).status_code == 200  # the test moves the account clock
        _wait_for(merchant, pi["id"], "Captured")
        merchant.close()
