"""The dispatcher in process, against a real socket on 127.0.0.1 and the resolver seam: the
destination rules are applied again at delivery (a name that re-binds to an internal address after
the subscription is refused, with no connection opened), and an attempt is written back only under
its lease."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

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
    prod, _ = world.services.accounts.create("prod", Mode.PROD)
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
