"""The internal hop over real HTTP on 127.0.0.1: the API side's Charger (``hop.client``) against
the PCI process's internal listener (``cde.internal``) served by uvicorn in a thread, over the
PCI side's own charger, vault and sandbox acquirer.

What it must keep: a charge, a re-send, a refund and a reversal cross it with their outcomes; only
the internal secret opens it (anything else is a bare 404); a PCI side that cannot be reached is a
503 for the merchant and a claim left to recovery, never a guess, so the money moves once when it
answers again.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from cardkeep.cde.internal import create_internal_app
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.money import Money
from cardkeep.hop import wire
from cardkeep.hop.client import LOG_EVERY, FailureLog, HopError, InternalCharger, trust
from cardkeep.service.ports import (
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    RefundOutcome,
    RefundRequest,
    RefundResult,
)
from tests.tls import Pem, ca_and_leaf
from tests.world import World, captured_log

SECRET = "internal-secret-for-tests-0123456789abcdef"
CHARGE = ChargeRequest(
    Mode.SANDBOX, "acc_1", "tok_1", Expiry(12, 2030), Money(1000, "GBP"), "charge:pi_1:1", None, 5.0
)
REFUND = RefundRequest(
    Mode.SANDBOX, "acc_1", "refund", Money(300, "GBP"), "refund:rf_1:1", "charge:pi_1:1", 5.0
)


def _socket() -> socket.socket:
    """A bound socket not yet listening: connecting to its port is refused until it serves."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _url(sock: socket.socket, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def serving(
    app: ASGIApp, sock: socket.socket | None = None, tls: Pem | None = None
) -> Iterator[str]:
    """``app`` on real HTTP (uvicorn, in a thread) on ``sock`` or a new socket, over TLS with
    ``tls``; its URL."""
    sock = sock or _socket()
    sock.listen(64)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        ssl_certfile=None if tls is None else str(tls.cert),
        ssl_keyfile=None if tls is None else str(tls.key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield _url(sock, "https" if tls else "http")
    finally:
        server.should_exit = True
        thread.join(10)


class Recording:
    """A Charger that records what reached it and answers approved (or raises, when told)."""

    def __init__(self, raises: bool = False) -> None:
        self.calls: list[tuple[str, object]] = []
        self.raises = raises

    def _seen(self, name: str, request: object) -> None:
        self.calls.append((name, request))
        if self.raises:
            raise TimeoutError("the acquirer did not answer")

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        self._seen("charge", request)
        return ChargeOutcome(ChargeResult.APPROVED, "Approved", "A1")

    def status(self, request: ChargeRequest) -> ChargeOutcome:
        self._seen("status", request)
        return ChargeOutcome(ChargeResult.DECLINED, "Do not honour")

    def refund(self, request: RefundRequest) -> RefundOutcome:
        self._seen("refund", request)
        return RefundOutcome(RefundResult.APPROVED, "Refunded")

    def refund_status(self, request: RefundRequest) -> RefundOutcome:
        self._seen("refund_status", request)
        return RefundOutcome(RefundResult.UNKNOWN, "Still unknown")


def test_each_call_crosses_the_hop_with_its_request_and_outcome() -> None:
    far = Recording()
    with serving(create_internal_app(far, SECRET)) as url:
        client = InternalCharger(url, SECRET)
        try:
            assert client.charge(CHARGE) == ChargeOutcome(ChargeResult.APPROVED, "Approved", "A1")
            assert client.status(CHARGE) == ChargeOutcome(ChargeResult.DECLINED, "Do not honour")
            assert client.refund(REFUND) == RefundOutcome(RefundResult.APPROVED, "Refunded")
            assert client.refund_status(REFUND) == RefundOutcome(
                RefundResult.UNKNOWN, "Still unknown"
            )
        finally:
            client.close()
    assert far.calls == [
        ("charge", CHARGE),
        ("status", CHARGE),
        ("refund", REFUND),
        ("refund_status", REFUND),
    ]


def _post(url: str, path: str, headers: dict[str, str], body: bytes = b"{}") -> httpx.Response:
    return httpx.post(f"{url}{path}", content=body, headers=headers, timeout=10)


def test_only_the_internal_secret_opens_the_internal_listener() -> None:
    far = Recording()
    good = {"Authorization": f"Bearer {SECRET}"}
    body = wire.encode_charge(CHARGE)
    with captured_log() as log, serving(create_internal_app(far, SECRET)) as url:
        refused = [
            _post(url, wire.CHARGE, {}, body),
            _post(url, wire.CHARGE, {"Authorization": f"Bearer {SECRET[:-1]}"}, body),
            _post(url, wire.CHARGE, {"Authorization": f"Bearer {SECRET}x"}, body),
            _post(url, wire.CHARGE, {"Authorization": f"Basic {SECRET}"}, body),
            _post(url, wire.CHARGE, {"Authorization": SECRET}, body),
            _post(url, "/internal/charges", good, body),
            _post(url, "/setup-intents", good, body),
            httpx.get(f"{url}{wire.CHARGE}", headers=good, timeout=10),
            httpx.put(f"{url}{wire.REFUND}", headers=good, content=body, timeout=10),
        ]
        # the right secret twice is not the right secret once
        twice = [("Authorization", f"Bearer {SECRET}")] * 2
        refused.append(httpx.post(f"{url}{wire.CHARGE}", content=body, headers=twice, timeout=10))
        assert [r.status_code for r in refused] == [404] * len(refused)
        assert {r.content for r in refused} == {b'{"status":404,"title":"Not Found"}'}
        assert far.calls == []  # nothing reached the charger
        ok = _post(url, wire.CHARGE, good, body)
        assert ok.status_code == 200, ok.text
        assert wire.decode_charge_outcome(ok.content).result is ChargeResult.APPROVED
    assert far.calls == [("charge", CHARGE)]
    text = log.getvalue()
    assert "internal_refused" in text
    assert SECRET not in text
    assert SECRET[:-1] not in text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "JSON"),
        (b"{}", "missing required field"),
        (wire.encode_charge(CHARGE).replace(b'"mode":"sandbox"', b'"mode":"live"'), "live"),
        (wire.encode_charge(CHARGE).replace(b'"expiry_month":12', b'"expiry_month":13'), "month"),
        (wire.encode_charge(CHARGE).replace(b'"timeout":5.0', b'"timeout":-1.0'), "timeout"),
        (wire.encode_charge(CHARGE).replace(b'"amount":1000', b'"amount":1.5'), "int"),
        (wire.encode_charge(CHARGE).replace(b'"currency":"GBP"', b'"currency":"GB"'), "three"),
        (wire.encode_charge(CHARGE)[:-1] + b',"pan":"5200000000001005"}', "unknown field"),
        (b"{" + b" " * wire.MAX_BODY + b"}", "over"),
    ],
)
def test_a_body_the_api_side_never_sends_is_a_400_and_reaches_nothing(
    body: bytes, reason: str
) -> None:
    far = Recording()
    with captured_log() as log, serving(create_internal_app(far, SECRET)) as url:
        r = _post(url, wire.CHARGE, {"Authorization": f"Bearer {SECRET}"}, body)
    assert r.status_code == 400, r.text
    assert reason in r.json()["detail"]
    assert far.calls == []
    assert "5200000000001005" not in log.getvalue()


def test_a_refund_body_is_checked_too() -> None:
    bad = wire.encode_refund(REFUND).replace(b'"kind":"refund"', b'"kind":"chargeback"')
    with pytest.raises(wire.WireError, match="kind"):
        wire.decode_refund(bad)
    with pytest.raises(wire.WireError, match="over"):
        wire.decode_refund_outcome(b" " * (wire.MAX_BODY + 1))
    with pytest.raises(wire.WireError):
        wire.decode_charge_outcome(b'{"result":"maybe","message":""}')
    with pytest.raises(wire.WireError):
        wire.decode_refund_outcome(b'{"result":"maybe","message":""}')
    assert wire.decode_refund(wire.encode_refund(REFUND)) == REFUND


def test_every_failure_of_the_hop_is_an_unknown_outcome_never_an_answer() -> None:
    """A refused secret, a call that raised on the far side, an answer that does not decode, a
    listener that is not there: each raises HopError (the service's unknown outcome)."""
    with serving(create_internal_app(Recording(raises=True), SECRET)) as url:
        wrong = InternalCharger(url, "another-secret-0123456789abcdefghijklmnop")
        raising = InternalCharger(url, SECRET)
        try:
            with pytest.raises(HopError, match="404"):
                wrong.charge(CHARGE)
            for call in (raising.charge, raising.status):
                with pytest.raises(HopError, match="502"):
                    call(CHARGE)
            for refund_call in (raising.refund, raising.refund_status):
                with pytest.raises(HopError, match="502"):
                    refund_call(REFUND)
        finally:
            wrong.close()
            raising.close()

    async def garbage(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"result":"approved"}'})

    with serving(garbage) as url:
        client = InternalCharger(url, SECRET)
        with pytest.raises(HopError, match="does not decode"):
            client.charge(CHARGE)
        client.close()
    closed = _socket()
    client = InternalCharger(_url(closed), SECRET)
    with pytest.raises(HopError, match="did not answer"):
        client.refund(REFUND)
    client.close()
    closed.close()


def _flow(world: World) -> tuple[str, str]:
    """A card on file and a payment intent for it."""
    si_id = world.authorized()
    return si_id, world.pi(si_id)


def test_the_whole_flow_charges_and_refunds_through_the_hop() -> None:
    sock = _socket()
    client = InternalCharger(_url(sock), SECRET)
    world = World(charger=client)
    merchant = world.merchant()
    with serving(create_internal_app(world.pci.charger, SECRET), sock):
        si_id, pi_id = _flow(world)
        r = merchant.charge(pi_id)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Successful"
        assert merchant.get_si(si_id).json()["status"] == "Completed"
        refund = merchant.api.post(
            f"/payment-intents/{pi_id}/refunds",
            json={"amount": 400},
            headers={"idempotencyKey": "r-1"},
        )
        assert refund.status_code == 200, refund.text
        reversal_pi = world.pi(world.authorized())
        assert merchant.charge(reversal_pi).json()["status"] == "Successful"
        reversal = merchant.api.post(f"/payment-intents/{reversal_pi}/reversal")
        assert reversal.status_code == 200, reversal.text
    client.close()
    ledger = world.storage.tables.sandbox_ledger
    assert sorted(k.split(":")[0] for k in ledger) == ["charge", "charge", "refund", "reversal"]
    assert merchant.api.get(f"/payment-intents/{reversal_pi}").json()["status"] == "Reversed"


def test_an_unreachable_pci_side_is_a_503_and_recovery_charges_once_when_it_answers() -> None:
    sock = _socket()
    client = InternalCharger(_url(sock), SECRET)
    world = World(charger=client, recovery_after=30)
    merchant = world.merchant()
    _, pi_id = _flow(world)
    with captured_log() as log:
        r = merchant.charge(pi_id)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"]
    assert r.json()["code"] == "service_unavailable"
    assert "pci_unreachable" in log.getvalue()
    assert world.storage.tables.sandbox_ledger == {}
    world.advance(seconds=31)
    assert world.services.payment_intents.recover() == 0  # still unreachable: the claim stays
    again = merchant.charge(pi_id)
    assert again.status_code in (409, 503), again.text  # never a second attempt meanwhile
    with serving(create_internal_app(world.pci.charger, SECRET), sock):
        world.advance(seconds=31)
        assert world.services.payment_intents.recover() == 1
        assert world.services.payment_intents.recover() == 0
    client.close()
    assert list(world.storage.tables.sandbox_ledger) == [f"charge:{pi_id}:1"]
    assert merchant.api.get(f"/payment-intents/{pi_id}").json()["status"] == "Captured"


def test_a_pci_side_down_is_logged_once_per_interval_not_once_per_call() -> None:
    """While the PCI process is down, every sweep re-sends each stuck charge: the log gets the
    first failure, then a line per LOG_EVERY counting the calls it stands for, then one line when
    the PCI side answers again."""
    now = [0.0]
    sock = _socket()
    client = InternalCharger(_url(sock), SECRET, failures=FailureLog(lambda: now[0]))

    def events() -> list[dict[str, object]]:
        return [json.loads(line) for line in log.getvalue().splitlines()]

    with captured_log() as log:
        for _ in range(50):
            with pytest.raises(HopError):
                client.charge(CHARGE)
        assert [(e["event"], e["failed_calls"]) for e in events()] == [("pci_unreachable", 1)]
        now[0] += LOG_EVERY - 0.1
        with pytest.raises(HopError):
            client.status(CHARGE)
        assert len(events()) == 1
        now[0] += 0.1
        with pytest.raises(HopError):
            client.refund(REFUND)
        unreachable = [e for e in events() if e["event"] == "pci_unreachable"]
        assert [e["failed_calls"] for e in unreachable] == [1, 51]
        with pytest.raises(HopError):
            client.charge(CHARGE)  # within the interval again: counted, not written
        with serving(create_internal_app(Recording(), SECRET), sock):
            for _ in range(3):
                assert client.charge(CHARGE).result is ChargeResult.APPROVED
    client.close()
    assert [(e["event"], e.get("unlogged_failed_calls")) for e in events()][2:] == [
        ("pci_answering", 1)
    ]


def test_over_tls_the_api_side_verifies_the_internal_listener(tmp_path: Path) -> None:
    """The internal listener over TLS: trusted by the CA that signed it, or by exactly its own
    certificate (``exact``); refused (a failing hop: the outcome unknown) by another CA, the
    system's CAs, its certificate without ``exact`` (no CA above it is trusted), a certificate
    for another host, or plain HTTP."""
    ca, leaf = ca_and_leaf(tmp_path / "mine")
    other_ca, _ = ca_and_leaf(tmp_path / "other")
    host_ca, other_host = ca_and_leaf(tmp_path / "host", hosts=("pci.internal",))

    def charged(url: str, verify: ssl.SSLContext | None) -> str:
        """``approved``, or why the hop failed."""
        client = InternalCharger(url, SECRET, verify=verify)
        try:
            return client.charge(CHARGE).result.value
        except HopError as exc:
            return str(exc)
        finally:
            client.close()

    refused = "the PCI process did not answer /internal/charge"
    with serving(create_internal_app(Recording(), SECRET), tls=leaf) as url:
        assert url.startswith("https://")
        assert charged(url, trust(ca.cert)) == "approved"
        assert charged(url, trust(leaf.cert, exact=True)) == "approved"
        assert refused in charged(url, trust(other_ca.cert))
        assert refused in charged(url, trust(None))
        assert refused in charged(url, trust(leaf.cert))
        assert refused in charged(url.replace("https://", "http://"), None)
    with serving(create_internal_app(Recording(), SECRET), tls=other_host) as url:
        assert refused in charged(url, trust(host_ca.cert))  # a trusted CA's, for another host
