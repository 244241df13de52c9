"""The dispatcher in process, against a real socket on 127.0.0.1 and the resolver seam: the
destination rules are applied again at delivery (a name that re-binds to an internal address after
the subscription is refused, with no connection opened), and an attempt is written back only under
its lease."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cardkeep.bootstrap import build_api, build_dispatcher
from cardkeep.domain.account import Account, Mode
from cardkeep.domain.errors import UrlNotAllowed
from cardkeep.domain.money import Money
from cardkeep.domain.webhooks import DeliveryStatus
from cardkeep.service.setup_intents import NewSetupIntent
from tests.world import World


class Listener:
    """A TCP port on 127.0.0.1 that counts the connections made to it and answers 204."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def _created(world: World, account: Account) -> None:
    cmd = NewSetupIntent("ref", "terms", "NoShow", intended_amount=Money(1000, "GBP"))
    world.services.setup_intents.create(account, cmd)


@pytest.mark.parametrize("internal", ["127.0.0.1", "169.254.169.254", "10.9.8.7"])
def test_a_name_that_rebinds_after_subscription_is_refused_at_delivery_unconnected(
    listener: Listener, internal: str
) -> None:
    world = World()
    prod, _, _ = world.services.accounts.create("prod", Mode.PROD)
    url = f"https://shop.example.com:{listener.port}/hook"
    world.dns["shop.example.com"] = [internal]
    with pytest.raises(UrlNotAllowed):  # refused at subscription
        world.services.webhooks.create(prod, ["setup_intent.created"], url)
    world.dns["shop.example.com"] = ["93.184.216.34"]
    world.services.webhooks.create(prod, ["setup_intent.created"], url)
    world.dns["shop.example.com"] = [internal]  # the name re-binds
    _created(world, prod)
    assert asyncio.run(world.dispatcher.run_once()) == 1
    (delivery,), _ = world.services.webhooks.deliveries(prod)
    assert delivery.attempts == 1
    assert delivery.status is DeliveryStatus.PENDING
    assert (delivery.last_error or "").startswith("url_not_allowed")
    assert delivery.last_response_status is None
    assert listener.connections == 0


def test_sandbox_delivers_to_localhost_and_records_the_answer(listener: Listener) -> None:
    world = World()
    url = f"http://localhost:{listener.port}/hook"
    world.services.webhooks.create(world.account, ["setup_intent.created"], url)
    world.authorized()
    assert asyncio.run(world.dispatcher.run_once()) == 1
    (delivery,), _ = world.services.webhooks.deliveries(world.account)
    assert (delivery.status, delivery.attempts, delivery.last_response_status) == (
        DeliveryStatus.DELIVERED,
        1,
        204,
    )
    assert listener.connections == 1
    assert asyncio.run(world.dispatcher.run_once()) == 0  # nothing due any more


def test_an_attempt_whose_lease_was_taken_over_is_not_recorded(listener: Listener) -> None:
    world = World()
    url = f"http://127.0.0.1:{listener.port}/hook"
    world.services.webhooks.create(world.account, ["setup_intent.created"], url)
    world.authorized()
    with world.storage.transaction(write=True) as uow:  # another dispatcher leased it, then died
        (taken,) = uow.deliveries.lease_due(world.clock.now(), world.clock.now(), 5)
        uow.commit()
    world.advance(seconds=1)
    assert asyncio.run(world.dispatcher.run_once()) == 1  # its lease ran out: attempted again
    (delivery,), _ = world.services.webhooks.deliveries(world.account)
    assert (delivery.id, delivery.status) == (taken.id, DeliveryStatus.DELIVERED)
    outcome = taken.attempted(
        world.clock.now(), delivered=True, response_status=200, error=None, jitter=0
    )
    with world.storage.transaction(write=True) as uow:  # the dead one's late write is refused
        assert not uow.deliveries.finish(taken.id, world.clock.now(), outcome)
    assert world.services.webhooks.deliveries(world.account)[0][0].attempts == 1
    world.advance(days=1)
    assert asyncio.run(world.dispatcher.run_once()) == 0
    assert listener.connections == 1


def _self_signed(tmp_path: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host`` (and its key), signed by itself: the receiver's and the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_a_prod_delivery_reaches_a_local_tls_receiver_by_name(tmp_path: Path) -> None:
    """With the CA file configured and loopback allow-listed, a prod delivery connects to the
    address it checked and still speaks TLS to the URL's host: the certificate for hooks.test
    verifies, and the receiver sees ``Host: hooks.test``."""
    cert, key = _self_signed(tmp_path, "hooks.test")
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append(self.headers["Host"])
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    port = int(httpd.server_address[1])
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        world = World()
        world.dns["hooks.test"] = ["127.0.0.1"]
        settings = replace(
            world.settings, webhook_allow=("127.0.0.0/8",), webhook_ca_file=str(cert)
        )
        api = build_api(
            settings,
            storage=world.storage,
            clock=world.clock,
            charger=world.pci.charger,
            idempotency_secret=world.idempotency_secret,
            webhooks=world.webhook_seams,
        )
        prod, _, _ = api.services.accounts.create("prod", Mode.PROD)
        url = f"https://hooks.test:{port}/in"
        api.services.webhooks.create(prod, ["setup_intent.created"], url)
        _created(world, prod)
        dispatcher = build_dispatcher(
            settings, world.storage, clock=world.clock, webhooks=world.webhook_seams
        )
        assert asyncio.run(dispatcher.run_once()) == 1
        (delivery,), _ = api.services.webhooks.deliveries(prod)
        assert (delivery.status, delivery.last_response_status) == (DeliveryStatus.DELIVERED, 204)
        assert seen == [f"hooks.test:{port}"]
        untrusting = build_dispatcher(  # without the CA file the certificate does not verify
            replace(settings, webhook_ca_file=None),
            world.storage,
            clock=world.clock,
            webhooks=world.webhook_seams,
        )
        _created(world, prod)
        assert asyncio.run(untrusting.run_once()) == 1
        (failed,) = [d for d in api.services.webhooks.deliveries(prod)[0] if d.id != delivery.id]
        assert failed.status is DeliveryStatus.PENDING
        assert "ConnectError" in (failed.last_error or "")
        assert len(seen) == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
