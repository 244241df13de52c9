"""Webhooks over real HTTP, on both engines: a receiver on 127.0.0.1 gets every event of a full
flow, signed so that Dojo's algorithm and the ``standardwebhooks`` package both verify it; the
subscription API answers as CONTRACT §8.1 says; failed attempts are retried on the schedule (on
the account's clock) and a failed delivery is replayed."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook

from cardkeep.webhooks import verify
from tests.e2e.harness import SI_FIELDS, Merchant, Server
from tests.e2e.receiver import Received, Receiver, receiver

ALL_EVENTS = [
    "payment_intent.created",
    "payment_intent.status_updated",
    "setup_intent.created",
    "setup_intent.status_updated",
]


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


def subscribe(merchant: Merchant, url: str, events: list[str] = ALL_EVENTS) -> dict[str, object]:
    r = merchant.api.post("/webhooks", json={"events": events, "url": url})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _events(posts: list[Received]) -> list[tuple[str, str]]:
    seen = []
    for post in posts:
        doc = json.loads(post.body)
        data = doc["data"]
        status = data.get("paymentStatus") or data.get("setupIntentStatus")
        seen.append(
            (doc["event"], f"{data.get('setupIntentId') or data.get('paymentIntentId')}:{status}")
        )
    return seen


def test_a_full_flow_delivers_every_event_signed_both_ways(
    merchant: Merchant, hook: Receiver
) -> None:
    sub = subscribe(merchant, hook.url)
    secret = sub["secrets"][0]["value"]  # type: ignore[index]
    si = merchant.authorized_si()
    pi = merchant.create_pi(si["id"]).json()
    assert merchant.charge(pi["id"]).json()["status"] == "Successful"
    canceled = merchant.create_si().json()
    assert merchant.api.delete(f"/setup-intents/{canceled['id']}").json()["status"] == "Canceled"
    expiring = merchant.create_si().json()
    merchant.advance(31 * 86_400)
    expected = {
        ("setup_intent.created", f"{si['id']}:Authorized"),
        ("payment_intent.created", f"{pi['id']}:Created"),
        ("payment_intent.status_updated", f"{pi['id']}:Captured"),
        ("setup_intent.status_updated", f"{si['id']}:Completed"),
        ("setup_intent.created", f"{canceled['id']}:Created"),
        ("setup_intent.status_updated", f"{canceled['id']}:Canceled"),
        ("setup_intent.created", f"{expiring['id']}:Created"),
        ("setup_intent.status_updated", f"{expiring['id']}:Expired"),
    }
    posts = hook.wait_for(lambda seen: expected <= set(_events(seen)))
    whsec = "whsec_" + base64.b64encode(secret.encode("utf-8")).decode()
    for post in posts:
        assert post.headers["content-type"] == "application/json"
        assert post.headers["user-agent"].startswith("cardkeep-webhooks/")
        doc = verify(post.body, {"Dojo-Signature": post.headers["dojo-signature"]}, secret)
        assert doc["accountId"] == sub["accountId"]
        std = {k: v for k, v in post.headers.items() if k.startswith("webhook-")}
        assert Webhook(whsec).verify(post.body, std)["id"] == doc["id"] == std["webhook-id"]
        assert abs(int(std["webhook-timestamp"]) - time.time()) < 120  # real time, not sandbox


def test_the_subscription_api(merchant: Merchant, other_merchant: Merchant, hook: Receiver) -> None:
    events = merchant.api.get("/webhooks/events")
    assert events.json() == [
        {"model": "PaymentIntent", "events": ALL_EVENTS[:2]},
        {"model": "SetupIntent", "events": ALL_EVENTS[2:]},
    ]
    sub = subscribe(merchant, hook.url, ["payment_intent.created"])
    assert sub["id"].startswith("ws_")  # type: ignore[union-attr]
    assert len(sub["secrets"][0]["value"]) == 22  # type: ignore[index]
    assert merchant.api.get("/webhooks").json() == [sub]
    assert other_merchant.api.get("/webhooks").json() == []
    assert (
        other_merchant.api.patch(f"/webhooks/{sub['id']}", json={"description": "x"}).status_code
        == 404
    )
    again = merchant.api.post("/webhooks", json={"events": ALL_EVENTS, "url": hook.url})
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    unknown = merchant.api.post(
        "/webhooks", json={"events": ["order.created"], "url": hook.url + "2"}
    )
    assert (unknown.status_code, unknown.json()["code"]) == (400, "validation_error")
    patched = merchant.api.patch(f"/webhooks/{sub['id']}", json={"description": "mine"}).json()
    assert (patched["description"], patched["events"]) == ("mine", ["payment_intent.created"])
    path = f"/webhooks/{sub['id']}/secrets"
    added = merchant.api.post(path)
    assert added.status_code == 200, added.text
    first, second = added.json()["secrets"]
    assert (first["isActive"], second["isActive"]) == (True, False)
    third = merchant.api.post(path)
    assert (third.status_code, third.json()["code"]) == (409, "conflict")
    active = merchant.api.delete(f"{path}/{first['id']}")
    assert (active.status_code, active.json()["code"]) == (400, "invalid_state")
    assert merchant.api.put(f"{path}/{second['id']}/activate").status_code == 204
    assert merchant.api.delete(f"{path}/{first['id']}").status_code == 204
    assert [s["id"] for s in merchant.api.get(path).json()["secrets"]] == [second["id"]]
    assert merchant.api.delete(f"/webhooks/{sub['id']}").status_code == 204
    assert merchant.api.delete(f"/webhooks/{sub['id']}").status_code == 404


def _recorded(merchant: Merchant, *, attempts: int) -> dict[str, object]:
    """The account's one delivery, once the log shows ``attempts`` (the receiver sees a POST
    before the dispatcher records its outcome)."""
    deadline = time.monotonic() + 10
    while True:
        (only,) = merchant.api.get("/webhooks/deliveries").json()["data"]
        if only["attempts"] == attempts or time.monotonic() > deadline:
            assert only["attempts"] == attempts, only
            return dict(only)
        time.sleep(0.05)


def test_failed_attempts_follow_the_schedule_and_a_failed_delivery_is_replayed(
    merchant: Merchant, hook: Receiver
) -> None:
    hook.script = [500] * 8
    subscribe(merchant, hook.url, ["setup_intent.created"])
    created = merchant.create_si(**SI_FIELDS).json()
    hook.wait_for(lambda seen: len(seen) == 1)
    delays = [5, 300, 1800, 7200, 18000, 36000, 36000]
    for attempt, delay in enumerate(delays, start=2):
        mine = _recorded(merchant, attempts=attempt - 1)
        assert mine["status"] == "pending"
        merchant.advance(int(delay * 0.9) - 1)  # before the earliest jittered time: nothing
        time.sleep(0.6)
        assert len(hook.posts) == attempt - 1
        merchant.advance(int(delay * 0.2) + 2)  # past the latest: the next attempt
        hook.wait_for(lambda seen, n=attempt: len(seen) == n)
    assert _recorded(merchant, attempts=8)["status"] == "failed"
    log = merchant.api.get("/webhooks/deliveries?status=failed").json()
    assert [(d["attempts"], d["lastResponseStatus"]) for d in log["data"]] == [(8, 500)]
    replayed = merchant.api.post(f"/webhooks/deliveries/{log['data'][0]['id']}/replay")
    assert replayed.json()["status"] == "pending"
    posts = hook.wait_for(lambda seen: len(seen) == 9)
    assert {json.loads(p.body)["data"]["setupIntentId"] for p in posts} == {created["id"]}
    assert len({p.headers["webhook-id"] for p in posts}) == 1  # the same event every time
    delivered = merchant.api.get("/webhooks/deliveries?status=delivered").json()["data"]
    assert [(d["attempts"], d["status"]) for d in delivered] == [(9, "delivered")]


def _cardkeep(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cardkeep", *args, "--data-dir", str(server.data_dir)]
    if server.database_url is not None:
        cmd += ["--database-url", server.database_url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_the_command_line_replays_and_tails(
    merchant: Merchant, server: Server, hook: Receiver
) -> None:
    hook.script = [500] * 8
    subscribe(merchant, hook.url, ["setup_intent.created"])
    merchant.create_si(**SI_FIELDS)
    for attempts, delay in enumerate((5, 300, 1800, 7200, 18000, 36000, 36000), start=1):
        _recorded(merchant, attempts=attempts)
        merchant.advance(int(delay * 1.1) + 2)
    (failed,) = _wait_log(merchant, "failed")
    usage = _cardkeep(server, "webhooks", "replay")
    assert usage.returncode == 2, usage.stderr
    unknown = _cardkeep(server, "webhooks", "replay", "whd_nope")
    assert unknown.returncode == 1
    assert "No webhook delivery with id whd_nope." in unknown.stderr
    replayed = _cardkeep(server, "webhooks", "replay", failed["id"])
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.split() == [failed["id"]]
    (delivered,) = _wait_log(merchant, "delivered")
    assert delivered["attempts"] == 9
    tail = _cardkeep(
        server, "webhooks", "tail", "--once", "--account", str(subscribe_account(merchant))
    )
    assert tail.returncode == 0, tail.stderr
    line = next(row for row in tail.stdout.splitlines() if failed["id"] in row)
    assert line.split("\t")[2:5] == ["setup_intent.created", "delivered", "9"]
    since = _cardkeep(server, "webhooks", "replay", "--failed-since", "2000-01-01")
    assert since.returncode == 0, since.stderr  # nothing failed any more in this account


def subscribe_account(merchant: Merchant) -> object:
    return merchant.api.get("/webhooks").json()[0]["accountId"]


def _wait_log(merchant: Merchant, status: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 20
    while True:
        rows = merchant.api.get(f"/webhooks/deliveries?status={status}").json()["data"]
        if rows or time.monotonic() > deadline:
            assert rows, f"no {status} delivery"
            return list(rows)
        time.sleep(0.1)
