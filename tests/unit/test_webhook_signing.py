"""Webhook signatures (CONTRACT §8.3): the contract's literal vector byte for byte, Standard
Webhooks headers that the ``standardwebhooks`` package verifies, and the merchant's ``verify``."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError as StdError

from cardkeep.domain.events import DomainEvent
from cardkeep.webhooks import WebhookVerificationError, verify
from cardkeep.webhooks.signing import dojo_signature, signed_headers

SECRET = "PDYkJQq6sESYHp_zJuTTBQ"
BODY = (
    b'{"id":"evt_hnnHxIKR_Uy6bhZCusCltw","event":"payment_intent.created","accountId":"acc_test",'
    b'"createdAt":"2022-02-01T13:07:41.8667859Z","data":{"paymentIntentId":'
    b'"pi_vpwd4ooAPEqyNAQe4z89WQ","paymentStatus":"Created","captureMode":"Auto"}}'
)
HEADER = (
    "sha256=4B-49-F8-FE-25-A7-E6-7D-00-4F-A7-9C-F8-0B-63-00-C7-77-B4-F2-2D-E5-E1-22-84-FA-04-18-50"
    "-A1-76-FD"
)


def test_the_contract_vector_is_reproduced_byte_for_byte() -> None:
    assert dojo_signature(SECRET, BODY) == HEADER
    assert verify(BODY, {"Dojo-Signature": HEADER}, SECRET)["id"] == "evt_hnnHxIKR_Uy6bhZCusCltw"


def test_changing_the_first_pair_fails() -> None:
    tampered = HEADER.replace("sha256=4B", "sha256=5B")
    with pytest.raises(WebhookVerificationError):
        verify(BODY, {"Dojo-Signature": tampered}, SECRET)
    with pytest.raises(WebhookVerificationError):
        verify(BODY + b" ", {"Dojo-Signature": HEADER}, SECRET)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, {"Dojo-Signature": HEADER}, "another-secret")


def test_standard_webhooks_headers_verify_with_the_package_for_every_secret() -> None:
    now = int(time.time())
    old = "b" * 22
    headers = signed_headers(
        BODY, event_id="evt_1", timestamp=now, active=SECRET, secrets=[old, SECRET]
    )
    assert headers["webhook-signature"].count("v1,") == 2
    std = {k: v for k, v in headers.items() if k.startswith("webhook-")}
    for secret in (SECRET, old):
        whsec = "whsec_" + base64.b64encode(secret.encode("utf-8")).decode()
        assert Webhook(whsec).verify(BODY, std)["id"] == "evt_hnnHxIKR_Uy6bhZCusCltw"
        assert verify(BODY, std, secret)["event"] == "payment_intent.created"
    whsec = "whsec_" + base64.b64encode(b"c" * 22).decode()
    with pytest.raises(StdError):
        Webhook(whsec).verify(BODY, std)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, std, "c" * 22)


def test_a_stale_standard_timestamp_is_refused_as_a_replay() -> None:
    stamp = int(time.time()) - 3600
    headers = signed_headers(BODY, event_id="evt_1", timestamp=stamp, active=SECRET, secrets=[])
    std = {k: v for k, v in headers.items() if k.startswith("webhook-")}
    with pytest.raises(WebhookVerificationError, match="too far"):
        verify(BODY, std, SECRET)
    assert verify(BODY, std, SECRET, now=stamp + 10)["id"]
    with pytest.raises(WebhookVerificationError, match="Unix"):
        verify(BODY, {**std, "webhook-timestamp": "soon"}, SECRET)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, {}, SECRET)


def test_a_signed_body_that_is_not_a_json_object_is_refused() -> None:
    for body in (b"not json", b"[1]"):
        with pytest.raises(WebhookVerificationError, match="JSON"):
            verify(body, {"Dojo-Signature": dojo_signature(SECRET, body)}, SECRET)


def test_an_event_payload_is_the_contract_bytes() -> None:
    event = DomainEvent(
        id="evt_1",
        event="payment_intent.status_updated",
        account_id="acc_1",
        created_at=datetime(2026, 11, 24, 13, 56, 55, 123456, tzinfo=UTC),
        data={"paymentIntentId": "pi_1", "paymentStatus": "Captured", "captureMode": "Auto"},
    )
    assert event.payload() == (
        b'{"id":"evt_1","event":"payment_intent.status_updated","accountId":"acc_1",'
        b'"createdAt":"2026-11-24T13:56:55.123456Z","data":{"paymentIntentId":"pi_1",'
        b'"paymentStatus":"Captured","captureMode":"Auto"}}'
    )
