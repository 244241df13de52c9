"""Idempotency-Key, one test per row of CONTRACT §6, on both listeners and both engines (the
``server`` fixture runs each test on SQLite and on PostgreSQL)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cardkeep.storage.codec import micros
from cardkeep.web.idempotency import Seal
from tests.e2e.harness import APPROVED_CARD, SI_FIELDS, Merchant, Server, card

CVV = "737"


def post(client: httpx.Client, path: str, key: str, body: object = None) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    return client.post(path, content=content, headers={"Idempotency-Key": key})


def _key() -> str:
    return f"k-{time.monotonic_ns()}"


LISTENERS = ["api", "pci"]


def _create(merchant: Merchant, listener: str) -> tuple[httpx.Client, dict[str, object]]:
    """The client of a listener and a setup-intent create it accepts (with a card on PCI)."""
    if listener == "api":
        return merchant.api, dict(SI_FIELDS)
    return merchant.pci, {**SI_FIELDS, "cardDetails": card(cv2=CVV)}


def test_a_new_key_runs_and_the_same_request_replays_the_stored_answer(merchant: Merchant) -> None:
    key = _key()
    first = post(merchant.api, "/setup-intents", key, SI_FIELDS)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    # The same JSON value: other key order, other whitespace.
    reordered = dict(reversed(list(SI_FIELDS.items())))
    again = merchant.api.post(
        "/setup-intents",
        content=json.dumps(reordered, indent=4).encode(),
        headers={"Idempotency-Key": key},
    )
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()  # one setup intent, its secret returned again
    assert again.headers["version"] == "2025-09-10"


def test_the_pci_listener_replays_a_card_create_without_a_second_authorization(
    merchant: Merchant,
) -> None:
    key = _key()
    body = {**SI_FIELDS, "cardDetails": card(cv2=CVV)}
    first = post(merchant.pci, "/setup-intents", key, body)
    assert first.status_code == 200, first.text
    # A client retrying with its CV2 re-typed differently is still the same request.
    retyped = {**SI_FIELDS, "cardDetails": {**card(), "cV2": "123"}}
    retyped["cardDetails"].pop("cv2")
    again = post(merchant.pci, "/setup-intents", key, retyped)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


def test_a_4xx_answer_is_kept_and_replayed_too(merchant: Merchant) -> None:
    key = _key()
    bad = {**SI_FIELDS, "reference": "r" * 61}
    first = post(merchant.api, "/setup-intents", key, bad)
    assert first.status_code == 400
    again = post(merchant.api, "/setup-intents", key, bad)
    assert (again.status_code, again.headers["idempotent-replayed"]) == (400, "true")
    assert again.json()["errors"] == first.json()["errors"]
    assert again.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("listener", LISTENERS)
def test_the_same_key_with_a_different_request_is_422(merchant: Merchant, listener: str) -> None:
    client, body = _create(merchant, listener)
    key = _key()
    assert post(client, "/setup-intents", key, body).status_code == 200
    other = post(client, "/setup-intents", key, {**body, "reference": "other"})
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_key_mismatch"
    if listener == "api":
        elsewhere = post(client, "/payment-intents", key, {"amount": 1})
        assert elsewhere.json()["code"] == "idempotency_key_mismatch"  # another path


def test_keys_belong_to_their_account(merchant: Merchant, other_merchant: Merchant) -> None:
    key = _key()
    mine = post(merchant.api, "/setup-intents", key, SI_FIELDS).json()
    theirs = post(other_merchant.api, "/setup-intents", key, SI_FIELDS)
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine["id"]


def _seal(server: Server) -> Seal:
    import base64

    secret = base64.b64decode((server.data_dir / "idempotency.key").read_text())
    return Seal(secret)


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_running_request_holds_the_key_until_its_lease_runs_out(
    merchant: Merchant, server: Server, listener: str
) -> None:
    client, body = _create(merchant, listener)
    key = _key()
    account = server.sql("SELECT account_id FROM api_keys ORDER BY created_at_us DESC")[0][0]
    fingerprint = _seal(server).fingerprint("POST", "/setup-intents", body)
    now = datetime.now(UTC)
    server.sql(  # what a process that died while running the first request leaves
        "INSERT INTO idempotency_keys (scope, key, fingerprint, state, leased_until_us,"
        " created_at_us) VALUES (?, ?, ?, 'running', ?, ?)",
        (account, key, fingerprint, micros(now + timedelta(seconds=60)), micros(now)),
    )
    held = post(client, "/setup-intents", key, body)
    assert held.status_code == 409, held.text
    assert held.json()["code"] == "idempotency_in_progress"
    assert held.headers["retry-after"] == "1"
    server.sql(
        "UPDATE idempotency_keys SET leased_until_us = ? WHERE key = ?",
        (micros(now - timedelta(seconds=1)), key),
    )
    taken_over = post(client, "/setup-intents", key, body)
    assert taken_over.status_code == 200, taken_over.text
    assert "idempotent-replayed" not in taken_over.headers
    assert post(client, "/setup-intents", key, body).headers["idempotent-replayed"]


def test_a_charge_retried_after_an_unknown_outcome_gets_the_settled_answer_once(
    merchant: Merchant,
) -> None:
    si = merchant.authorized_si()
    pi = merchant.create_pi(si["id"], value=1099).json()  # the acquirer's answer is lost
    key = _key()
    path = f"/payment-intents/{pi['id']}/charge"
    lost = post(merchant.api, path, key)
    assert lost.status_code == 503  # nothing stored: the retry runs again
    answers = [post(merchant.api, path, key)]
    deadline = time.monotonic() + 15
    while answers[-1].status_code == 409:
        assert answers[-1].json()["code"] == "charge_in_progress"
        assert "idempotent-replayed" not in answers[-1].headers
        assert time.monotonic() < deadline, "recovery never settled the charge"
        time.sleep(0.2)
        answers.append(post(merchant.api, path, key))
    settled = answers[-1]
    assert settled.status_code == 200, settled.text
    assert settled.json() == {
        "paymentIntentId": pi["id"],
        "status": "Successful",
        "message": "DEPOSITED",
    }
    replay = post(merchant.api, path, key)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == settled.json()
    other = post(merchant.api, path, _key())  # another request: the intent is already Captured
    assert other.json()["code"] == "invalid_state"
    events = merchant.api.get(f"/payment-intents/{pi['id']}").json()["paymentEvents"]
    assert [e["eventType"] for e in events] == ["Captured"]


def test_a_malformed_key_is_a_validation_error(merchant: Merchant) -> None:
    for key in ("", "x" * 256, "tab\there"):
        r = merchant.api.post("/setup-intents", json=SI_FIELDS, headers={"Idempotency-Key": key})
        assert r.status_code == 400, (key, r.text)
        assert "Idempotency-Key" in r.json()["errors"]


def test_idempotency_records_hold_no_card_data_and_no_secret(
    merchant: Merchant, server: Server
) -> None:
    created = post(merchant.api, "/setup-intents", _key(), SI_FIELDS).json()
    secret = created["clientSessionSecret"]
    post(merchant.pci, "/setup-intents", _key(), {**SI_FIELDS, "cardDetails": card(cv2=CVV)})
    rows = server.sql("SELECT fingerprint, body FROM idempotency_keys")
    assert len(rows) >= 2
    stored = b"".join(str(r[0]).encode() + bytes(r[1] or b"") for r in rows)
    raw = server.stored_bytes()
    for needle in (APPROVED_CARD, secret, f'"{CVV}"', "520000******1005"):
        assert needle.encode() not in stored, needle  # sealed: not even the masked card shows
        if needle != "520000******1005":
            assert needle.encode() not in raw, needle
