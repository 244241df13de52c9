"""Webhooks survive crashes and many dispatchers, on both engines.

- ``kill -9`` of the server at random moments during 100 flows (at least 10 kills): after a
  restart every event the database committed reaches the receiver at least once, and every
  object's final status was announced; none is lost.
- A server and a standalone ``cardkeep webhooks dispatch`` on the same database, a receiver that
  fails every first attempt: the receiver's count of POSTs per delivery equals the attempt count in
  the delivery log (no attempt is made twice).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import SI_FIELDS, VERSION, Server, _start, _stop, card
from tests.e2e.receiver import Received, Receiver, receiver

pytestmark = pytest.mark.slow

FLOWS = 100
KILLS = 10
# A request killed mid-way holds its Idempotency-Key for the lease: a short one keeps retries quick.
ENV = {"CARDKEEP_IDEMPOTENCY_LEASE": "1"}
EVENTS = [
    "payment_intent.created",
    "payment_intent.status_updated",
    "setup_intent.created",
    "setup_intent.status_updated",
]


class Current:
    """The server as it is now (a restart moves it to new ports). While one is down, ``url``
    waits for its successor: a request retried on the old port could reach whatever listener
    the restart bound there (the new PCI listener on the old API port, say)."""

    def __init__(self, server: Server) -> None:
        self.server: Server | None = server
        self.cond = threading.Condition()

    def down(self) -> Server:
        with self.cond:
            server, self.server = self.server, None
            assert server is not None
            return server

    def up(self, server: Server) -> None:
        with self.cond:
            self.server = server
            self.cond.notify_all()

    def url(self, listener: str) -> str:
        with self.cond:
            assert self.cond.wait_for(lambda: self.server is not None, 60), "no server came back"
            assert self.server is not None
            return self.server.api_url if listener == "api" else self.server.pci_url


def _call(current: Current, key: str, listener: str, path: str, body: Any, idem: str) -> Any:
    """POST until answered, with the same Idempotency-Key: a dead server is the merchant's
    everyday weather here."""
    headers = {"Authorization": f"Basic {key}", "version": VERSION, "Idempotency-Key": idem}
    for _ in range(600):
        try:
            r = httpx.post(current.url(listener) + path, json=body, headers=headers, timeout=10)
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        if r.status_code in (409, 503):
            time.sleep(0.1)
            continue
        assert r.status_code == 200, r.text
        return r.json()
    raise AssertionError(f"{path} never answered")


def _flow(current: Current, key: str, i: int) -> None:
    """PCI create → payment intent → charge."""
    si = _call(current, key, "pci", "/setup-intents", {**SI_FIELDS, "cardDetails": card()}, f"s{i}")
    body = {
        "amount": {"value": 1000 + (i % 40) * 10, "currencyCode": "GBP"},
        "reference": "crash",
        "setupIntentId": si["id"],
    }
    pi = _call(current, key, "api", "/payment-intents", body, f"p{i}")
    _call(current, key, "api", f"/payment-intents/{pi['id']}/charge", None, f"c{i}")


def _subscribe(server: Server, key: str, url: str) -> None:
    headers = {"Authorization": f"Basic {key}", "version": VERSION}
    body = {"events": EVENTS, "url": url}
    r = httpx.post(f"{server.api_url}/webhooks", json=body, headers=headers, timeout=10)
    assert r.status_code == 200, r.text


def _posts_per_event(hook: Receiver) -> Counter[str]:
    with hook.lock:
        return Counter(p.headers["webhook-id"] for p in hook.posts)


def _wait_all_delivered(server: Server, key: str | None = None) -> None:
    """Until every delivery is delivered. With ``key``, a delivery waiting for a retry is brought
    forward by moving the account's clock (a kill may have cut an attempt short)."""
    undelivered = (
        "SELECT id, status, attempts, last_error FROM webhook_deliveries WHERE status <> ?"
    )
    deadline = time.monotonic() + 120
    while rows := server.sql(undelivered, ("delivered",)):
        assert time.monotonic() < deadline, rows[:5]
        if key is not None and any(attempts for _, _, attempts, _ in rows):
            headers = {"Authorization": f"Basic {key}", "version": VERSION}
            advance = {"seconds": 11 * 3600}
            httpx.post(f"{server.api_url}/sandbox/clock/advance", json=advance, headers=headers)
        time.sleep(0.5)


def test_no_committed_event_is_lost_to_kill_9(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    with receiver() as hook:
        data_dir.mkdir()
        first = _start(data_dir, 1, ENV, database_url)
        current = Current(first)
        try:
            key = first.create_account("crash")
            _subscribe(first, key, hook.url)
            done = threading.Event()
            progress = [0]  # flows finished
            failures: list[BaseException] = []

            def flows() -> None:
                try:
                    for i in range(FLOWS):
                        _flow(current, key, i)
                        progress[0] = i + 1
                except BaseException as exc:  # reported below
                    failures.append(exc)
                finally:
                    done.set()

            worker = threading.Thread(target=flows)
            worker.start()
            rng = random.Random(20261129)
            kills = 0
            # Kill points spread over the run, each a random moment into a flow.
            for at in sorted(rng.sample(range(2, FLOWS - 2), KILLS + 2)):
                while progress[0] < at and not done.is_set():
                    time.sleep(0.01)
                if done.is_set():
                    break
                time.sleep(rng.uniform(0.0, 0.15))
                killed = current.down()
                killed.proc.kill()  # SIGKILL, at whatever point it has reached
                killed.proc.wait()
                kills += 1
                current.up(_start(data_dir, 1, ENV, database_url))
            worker.join()
            assert not failures, failures[0]
            assert kills >= KILLS, kills
            server = current.server
            assert server is not None
            _wait_all_delivered(server, key)
            posts = _posts_per_event(hook)
            committed = [str(row[0]) for row in server.sql("SELECT id FROM outbox")]
            assert len(committed) >= 4 * FLOWS  # SI created, PI created, Captured, Completed
            lost = [event for event in committed if event not in posts]
            assert not lost, f"{len(lost)} committed events never delivered"
            announced = _announced(hook.posts)
            headers = {"Authorization": f"Basic {key}", "version": VERSION}
            for obj in {o for o, _ in announced}:
                kind = "setup-intents" if obj.startswith("si_") else "payment-intents"
                r = httpx.get(f"{server.api_url}/{kind}/{obj}", headers=headers, timeout=10)
                assert r.status_code == 200, r.text
                assert (obj, r.json()["status"]) in announced, (obj, r.json()["status"])
        finally:
            if current.server is not None:
                _stop(current.server.proc)


def _announced(posts: list[Received]) -> set[tuple[str, str]]:
    seen = set()
    for post in posts:
        data = json.loads(post.body)["data"]
        obj = data.get("setupIntentId") or data.get("paymentIntentId")
        seen.add((obj, data.get("setupIntentStatus") or data.get("paymentStatus")))
    return seen


def _fail_each_first_post(post: Received, before: list[Received]) -> int:
    first = all(p.headers["webhook-id"] != post.headers["webhook-id"] for p in before)
    return 500 if first else 204


def test_two_dispatchers_make_each_attempt_once(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with receiver() as hook:
        hook.policy = _fail_each_first_post
        server = _start(data_dir, 1, ENV, database_url)
        cmd = [sys.executable, "-m", "cardkeep", "webhooks", "dispatch"]
        cmd += ["--data-dir", str(data_dir)]
        if database_url is not None:
            cmd += ["--database-url", database_url]
        other = subprocess.Popen(
            cmd,
            env={**os.environ, "CARDKEEP_DISPATCH_INTERVAL": "0.05"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            key = server.create_account("twins")
            _subscribe(server, key, hook.url)
            current = Current(server)
            for i in range(15):
                _flow(current, key, i)
            _wait_all_delivered(server)
            posts = _posts_per_event(hook)
            logged = {
                str(e): int(n)
                for e, n in server.sql("SELECT event_id, attempts FROM webhook_deliveries")
            }
            assert len(logged) == 4 * 15
            assert set(logged.values()) == {2}  # the failed first attempt, then the delivery
            assert {event: posts[event] for event in logged} == logged
        finally:
            other.kill()
            other.wait()
            _stop(server.proc)
