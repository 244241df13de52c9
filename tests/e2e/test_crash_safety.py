"""Crash safety: merchants run flows (a card set up on the PCI listener, a payment intent, its
charge; now and then a setup intent on the API listener too) while the server is killed with
SIGKILL at random moments and started again on the same data directory and database, or while
its PostgreSQL cluster is stopped as abruptly as a crash and started again.

Each request carries an Idempotency-Key and is retried with the same key until it gets an answer
(as a merchant does after a lost connection, a 503 or a 409 in progress). Every 2xx answer the
merchant saw is recorded. Afterwards, on a server that is left to run until recovery has settled:
every acknowledged object exists, at least as far along as acknowledged; every acknowledged charge
is as its answer said (Successful: Captured and Completed); one object per key; the sandbox
acquirer's ledger has at most one approved charge per setup intent, and exactly one for each
Completed one; no charge is left in flight.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cardkeep.domain.payment_intent import Status as PI
from cardkeep.domain.setup_intent import Status as SI
from cardkeep.storage import codec
from tests.e2e.harness import (
    SI_FIELDS,
    VERSION,
    Server,
    alive,
    card,
    http_client,
    run_server,
    workers_of,
)
from tests.postgres import private_cluster

pytestmark = pytest.mark.slow

FLOWS = 200
KILLS = 20
THREADS = 4
DEADLINE = 400.0  # seconds: a run that has not finished by then has hung
# A key left running by a killed process holds off its retry this long (the default is 60 s).
ENV = {
    "CARDKEEP_IDEMPOTENCY_LEASE": "1",
    "CARDKEEP_DB_CONNECT_TIMEOUT": "2",
    "CARDKEEP_DB_STATEMENT_TIMEOUT": "2",
}
# How far along an object is: it may only have moved forward since its answer.
RANK = {
    "si": {"Created": 0, "Authorized": 1, "Completed": 2},
    "api_si": {"Created": 0},
    "pi": {"Created": 0, "Captured": 1},
}


class Stale(Exception):
    """The server that was asked is gone: retry on the current one."""


@dataclass
class Target:
    """The server the merchants talk to now; ``generation`` counts the servers started."""

    key: str = ""
    server: Server | None = None
    generation: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def up(self, server: Server) -> None:
        with self.cond:
            self.server, self.generation = server, self.generation + 1
            self.cond.notify_all()

    def down(self) -> None:
        with self.cond:
            self.server = None

    def current(self, newer_than: int = 0, timeout: float = 60) -> tuple[int, Server]:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: self.server is not None and self.generation > newer_than, timeout
            )
            assert ok, "no server came back"
            assert self.server is not None
            return self.generation, self.server


@dataclass
class Run:
    """What the merchants saw: every 2xx answer, by flow, and any answer that was not expected."""

    target: Target
    flows_wanted: int
    kills_wanted: int
    kills: int = 0
    started: int = 0
    finished: int = 0
    acks: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    surprises: list[str] = field(default_factory=list)
    lost: int = 0  # requests whose answer the merchant never saw (the server died)
    replayed: int = 0  # answers that came from a kept Idempotency-Key answer
    unavailable: int = 0  # 503 answers (database down, charge outcome unknown): retried
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_flow(self) -> int | None:
        """A new flow's number while flows are wanted, paced so flows spread over the kills."""
        while not self.stop.is_set():
            with self.lock:
                share = min(1.0, (self.kills + 2) / max(1, self.kills_wanted))
                if self.started >= self.flows_wanted and self.kills >= self.kills_wanted:
                    return None
                if self.started < self.flows_wanted * share or self.kills >= self.kills_wanted:
                    self.started += 1
                    return self.started
            time.sleep(0.05)
        return None

    def ack(self, kind: str, flow: int, body: dict[str, Any]) -> None:
        with self.lock:
            self.acks.append((kind, flow, body))

    @property
    def enough(self) -> bool:
        """Kills enough, and every flow started (the last ones finish on the final server)."""
        return self.started >= self.flows_wanted and self.kills >= self.kills_wanted

    def summary(self) -> str:
        return (
            f"{self.kills} kills, {self.finished} flows, {len(self.acks)} answers, "
            f"{self.lost} lost, {self.replayed} replayed, {self.unavailable} 503s"
        )


class Merchant:
    """One merchant thread: flows over whichever server is up, every request retried with its
    key until it has an answer."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.generation = 0
        self.clients: dict[str, httpx.Client] = {}

    def _clients(self) -> tuple[int, Server, dict[str, httpx.Client]]:
        generation, server = self.run.target.current()
        if generation != self.generation:
            for client in self.clients.values():
                client.close()
            headers = {"Authorization": f"Basic {self.run.target.key}", "version": VERSION}
            self.clients = {
                name: http_client(url, headers, timeout=20)
                for name, url in (("api", server.api_url), ("pci", server.pci_url))
            }
            self.generation = generation
        return generation, server, self.clients

    def post(self, listener: str, path: str, key: str, body: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, f"no answer to {path} with key {key}"
            generation, server, clients = self._clients()
            time.sleep(random.uniform(0, 0.04))  # the merchant's own work between requests
            try:
                r = clients[listener].post(path, json=body, headers={"Idempotency-Key": key})
                if self.run.target.server is not server:
                    raise Stale  # answered as it was killed: as if the answer were lost
            except (httpx.TransportError, Stale):
                with self.run.lock:
                    self.run.lost += 1
                self.run.target.current(newer_than=generation)
                continue
            if r.status_code == 200:
                if r.headers.get("idempotent-replayed"):
                    with self.run.lock:
                        self.run.replayed += 1
                return r.json()  # type: ignore[no-any-return]
            code = r.json().get("code")
            if r.status_code == 503:
                with self.run.lock:
                    self.run.unavailable += 1
            if r.status_code == 503 or code in ("idempotency_in_progress", "charge_in_progress"):
                time.sleep(random.uniform(0.05, 0.3))
                continue
            raise AssertionError(f"{path} with key {key}: {r.status_code} {r.text}")

    def flow(self, n: int) -> None:
        value = 1099 if n % 4 == 3 else 1051 if n % 10 == 7 else 1000  # lost answer / declined
        body = {**SI_FIELDS, "reference": f"flow-{n}", "cardDetails": card()}
        si = self.post("pci", "/setup-intents", f"si-{n}", body)
        self.run.ack("si", n, si)
        if n % 3 == 0:
            api_body = {**SI_FIELDS, "reference": f"api-{n}"}
            created = self.post("api", "/setup-intents", f"api-si-{n}", api_body)
            self.run.ack("api_si", n, created)
        amount = {"value": value, "currencyCode": "GBP"}
        pi_body = {"amount": amount, "reference": f"flow-{n}", "setupIntentId": si["id"]}
        pi = self.post("api", "/payment-intents", f"pi-{n}", pi_body)
        self.run.ack("pi", n, pi)
        charged = self.post("api", f"/payment-intents/{pi['id']}/charge", f"charge-{n}")
        self.run.ack("charge", n, charged)

    def work(self) -> None:
        try:
            while (n := self.run.next_flow()) is not None:
                try:
                    self.flow(n)
                except AssertionError as exc:
                    with self.run.lock:
                        self.run.surprises.append(str(exc))
                with self.run.lock:
                    self.run.finished += 1
        finally:
            for client in self.clients.values():
                client.close()


def kill_9(server: Server) -> list[int]:
    """SIGKILL the server's process and every worker of it; the pids killed."""
    pids = [server.proc.pid, *workers_of(server.proc.pid)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    server.proc.wait()
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "a killed process lives on"
        time.sleep(0.05)
    return pids


def merchants(run: Run) -> Iterator[threading.Thread]:
    for i in range(THREADS):
        thread = threading.Thread(target=Merchant(run).work, name=f"merchant-{i}", daemon=True)
        thread.start()
        yield thread


def settle_and_check(server: Server, run: Run, key: str) -> None:
    """On a server left running: wait until no charge is in flight, then check everything the
    merchants were told against what is stored."""
    assert not run.surprises, (run.summary(), run.surprises[:5])
    account = server.sql("SELECT account_id FROM api_keys")[0][0]
    in_flight = "SELECT count(*) FROM payment_intents WHERE status = ?"
    wait_for(lambda: server.sql(in_flight, (PI.CHARGING.value,))[0][0] == 0, "charges settle")
    sis = {
        row[0]: codec.decode_si(row[1])
        for row in server.sql("SELECT id, doc FROM setup_intents WHERE account_id = ?", (account,))
    }
    pis = {
        row[0]: codec.decode_pi(row[1])
        for row in server.sql(
            "SELECT id, doc FROM payment_intents WHERE account_id = ?", (account,)
        )
    }
    headers = {"Authorization": f"Basic {key}", "version": VERSION}
    with http_client(server.api_url, headers, timeout=20) as api:
        charged: dict[str, str] = {}  # setup intent id -> the charge answer's status
        pi_of = {flow: body["id"] for kind, flow, body in run.acks if kind == "pi"}
        si_of = {flow: body["id"] for kind, flow, body in run.acks if kind == "si"}
        for kind, flow, body in run.acks:
            if kind == "charge":
                assert body["paymentIntentId"] == pi_of[flow]
                charged[si_of[flow]] = body["status"]
                continue
            path = "/payment-intents/" if kind == "pi" else "/setup-intents/"
            got = api.get(path + body["id"])
            assert got.status_code == 200, (kind, got.text)
            rank = RANK[kind]
            assert rank[got.json()["status"]] >= rank[body["status"]], (kind, body, got.text)
            if kind == "api_si":  # the secret acknowledged (maybe replayed) is the one that works
                auth = {"Authorization": f"Basic {body['clientSessionSecret']}"}
                public = api.get(f"/setup-intents/public/{body['id']}", headers=auth)
                assert public.status_code == 200, public.text
        for flow, si_id in si_of.items():
            status = charged.get(si_id)
            pi = pis[pi_of[flow]]
            if status == "Successful":
                assert (pi.status, sis[si_id].status) == (PI.CAPTURED, SI.COMPLETED), flow
            elif status is not None:
                assert (pi.status, sis[si_id].status) == (PI.CREATED, SI.AUTHORIZED), flow
    # One object per key: each flow's references name exactly one object.
    references = Counter(si.reference for si in sis.values())
    references.update(pi.reference + "/pi" for pi in pis.values())
    assert [ref for ref, count in references.items() if count > 1] == [], run.summary()
    # Nothing in flight; the acquirer's ledger: at most one approved charge per setup intent.
    assert all(p.status is not PI.CHARGING for p in pis.values())
    assert all(s.status is not SI.CHARGE_HELD for s in sis.values())
    approved = Counter(
        pis[row[0].split(":")[1]].setup_intent_id
        for row in server.sql(
            "SELECT idempotency_key FROM sandbox_ledger WHERE result = ?", ("approved",)
        )
        if row[0].split(":")[1] in pis
    )
    assert max(approved.values(), default=0) <= 1
    completed = {si.id for si in sis.values() if si.status is SI.COMPLETED}
    assert completed == set(approved), "a Completed setup intent without its one capture"
    assert run.finished >= run.flows_wanted
    assert len(charged) == len(si_of) == run.finished


def test_kill_9_at_random_moments_loses_no_acknowledged_change_and_charges_once(
    tmp_path: Path, database_url: str | None
) -> None:
    rng = random.Random()
    run = Run(Target(), FLOWS, KILLS)
    started = time.monotonic()

    def kill_at_random(server: Server, life: int) -> None:
        """One life of the server: a random while, then kill -9. With ``--workers 2``, a worker
        is killed first (its supervisor starts another), then the supervisor and the rest."""
        time.sleep(rng.uniform(0.1, 1.5))
        if life % 5 == 4 and (victims := sorted(workers_of(server.proc.pid))):
            os.kill(rng.choice(victims), signal.SIGKILL)
            with run.lock:
                run.kills += 1
            time.sleep(rng.uniform(0.2, 1.0))
        run.target.down()
        kill_9(server)
        with run.lock:
            run.kills += 1

    killer_failed: list[BaseException] = []

    def killer() -> None:
        life = 0
        try:
            while not run.enough:
                assert time.monotonic() - started < DEADLINE, "the run did not finish in time"
                workers = 2 if life % 5 == 4 else 1
                with run_server(
                    tmp_path, workers=workers, env=ENV, database_url=database_url
                ) as server:
                    if not run.target.key:
                        run.target.key = server.create_account("crash")
                    run.target.up(server)
                    kill_at_random(server, life)
                life += 1
        except BaseException as exc:
            killer_failed.append(exc)
            run.stop.set()

    threads = list(merchants(run))
    kill_thread = threading.Thread(target=killer, name="killer", daemon=True)
    kill_thread.start()
    kill_thread.join(DEADLINE)
    assert not killer_failed, killer_failed
    with run_server(tmp_path, env=ENV, database_url=database_url) as server:
        run.target.up(server)  # the flows that were cut short finish on it
        for thread in threads:
            thread.join(120)
            assert not thread.is_alive(), "a merchant is stuck"
        assert run.kills >= KILLS
        settle_and_check(server, run, run.target.key)
        assert run.lost > 0, run.summary()  # the kills did cut requests short
        assert "worker_died" in server.log_text()  # and a worker of a supervisor was killed


def test_postgres_stopped_immediately_mid_run_loses_no_acknowledged_change(
    tmp_path: Path,
) -> None:
    run = Run(Target(), 60, 0)
    with (
        private_cluster() as cluster,
        run_server(tmp_path, env=ENV, database_url=cluster.url) as server,
    ):
        run.target.key = server.create_account("crash")
        run.target.up(server)
        threads = list(merchants(run))
        for stop_after in (15, 40):  # two crashes of the database, while flows run
            wait_for(lambda: run.finished >= stop_after, "flows run")
            cluster.stop("immediate")
            time.sleep(random.uniform(1.0, 3.0))
            cluster.start()
        for thread in threads:
            thread.join(120)
            assert not thread.is_alive(), "a merchant is stuck"
        wait_for(lambda: httpx.get(f"{server.api_url}/health").status_code == 200, "health")
        settle_and_check(server, run, run.target.key)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)
