"""The sandbox acquirer's refunds and reversals: outcomes by amount, the first answer per key, the
lost answer settled by a re-send, and the ledger's backstop (no capture, more than the capture),
over the in-memory storage; then a refund of a charge captured through the service, by the
refunder that ``build_pci`` exposes."""

from __future__ import annotations

import pytest

from cardkeep.cde.acquirers.base import AcquirerRefused, MitCharge, RefundCall
from cardkeep.cde.acquirers.ledger import Capture, StorageLedger
from cardkeep.cde.acquirers.sandbox import SandboxAcquirer
from cardkeep.cde.pan import CardNumber
from cardkeep.cde.refunder import AcquirerRefunder
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import Status as PI
from cardkeep.service.ports import (
    ChargeResult,
    RefundOutcome,
    RefundRequest,
    RefundResult,
)
from cardkeep.storage.memory import MemoryStorage
from tests.world import FixedClock, World

CAPTURE = "charge:pi_1:1"
APPROVED_REFUND = RefundOutcome(RefundResult.APPROVED, "REFUNDED")


class Sandbox:
    """A sandbox acquirer over its ledger in a fresh in-memory storage."""

    def __init__(self, *, allow_prod: bool = False) -> None:
        self.storage = MemoryStorage()
        self.ledger = StorageLedger(self.storage, FixedClock())
        self.acquirer = SandboxAcquirer(self.ledger, allow_prod=allow_prod)
        self._keys = 0

    def capture(self, value: int = 10_000, key: str = CAPTURE, mode: Mode = Mode.SANDBOX) -> str:
        charge = MitCharge(
            mode,
            CardNumber("5200000000001005"),
            Expiry(12, 2030),
            Money(value, "GBP"),
            key,
            "nt_1",
            10.0,
        )
        assert self.acquirer.charge(charge).result is ChargeResult.APPROVED
        return key

    def call(
        self,
        value: int,
        *,
        key: str | None = None,
        kind: str = "refund",
        capture_key: str = CAPTURE,
        mode: Mode = Mode.SANDBOX,
    ) -> RefundCall:
        if key is None:
            self._keys += 1
            key = f"refund:rf_{self._keys}:1"
        return RefundCall(mode, kind, Money(value, "GBP"), key, capture_key, 10.0)

    def rows(self) -> dict[str, tuple[str, int | None, str | None, str | None]]:
        """Each ledger entry: result, amount, capture key, kind."""
        return {
            key: (row[1], row[6], row[7], row[8])
            for key, row in self.storage.tables.sandbox_ledger.items()
        }


@pytest.mark.parametrize(
    ("value", "result", "message"),
    [
        (1051, RefundResult.DECLINED, "Insufficient funds"),
        (1005, RefundResult.DECLINED, "Do not honour"),
        (1098, RefundResult.FAILED, "Acquirer unavailable"),
        (1000, RefundResult.APPROVED, "REFUNDED"),
        (1042, RefundResult.APPROVED, "REFUNDED"),
    ],
)
def test_a_refunds_outcome_is_chosen_by_the_amounts_last_two_digits(
    value: int, result: RefundResult, message: str
) -> None:
    sandbox = Sandbox()
    sandbox.capture()
    call = sandbox.call(value)
    assert sandbox.acquirer.refund(call) == RefundOutcome(result, message)
    assert sandbox.rows()[call.idempotency_key] == (result.value, value, CAPTURE, "refund")
    assert sandbox.ledger.refunded(CAPTURE) == (value if result is RefundResult.APPROVED else 0)


@pytest.mark.parametrize(
    ("value", "result", "message"),
    [
        (1051, RefundResult.DECLINED, "Insufficient funds"),
        (1005, RefundResult.DECLINED, "Do not honour"),
        (1098, RefundResult.FAILED, "Acquirer unavailable"),
        (10_000, RefundResult.APPROVED, "REVERSED"),
    ],
)
def test_a_reversal_has_the_same_triggers_and_is_approved_as_reversed(
    value: int, result: RefundResult, message: str
) -> None:
    sandbox = Sandbox()
    sandbox.capture()
    call = sandbox.call(value, kind="reversal")
    assert sandbox.acquirer.refund(call) == RefundOutcome(result, message)
    assert sandbox.rows()[call.idempotency_key] == (result.value, value, CAPTURE, "reversal")


def test_the_first_answer_for_a_key_stands_and_a_resend_never_refunds_twice() -> None:
    sandbox = Sandbox()
    sandbox.capture(10_000)
    call = sandbox.call(4000)
    assert sandbox.acquirer.refund(call) == APPROVED_REFUND
    assert sandbox.acquirer.refund(call) == APPROVED_REFUND
    assert sandbox.acquirer.refund_status(call) == APPROVED_REFUND
    assert sandbox.ledger.refunded(CAPTURE) == 4000  # once, however often it was sent
    assert sandbox.acquirer.times_sent(call.idempotency_key) == 2
    # a decline stands too: the same key does not become an approval
    declined = sandbox.call(1051)
    assert sandbox.acquirer.refund(declined).result is RefundResult.DECLINED
    assert sandbox.acquirer.refund_status(declined).result is RefundResult.DECLINED
    assert sandbox.ledger.refunded(CAPTURE) == 4000


def test_a_resend_with_the_same_key_gets_the_first_answer_whatever_it_now_says() -> None:
    sandbox = Sandbox()
    sandbox.capture(10_000)
    assert sandbox.acquirer.refund(sandbox.call(1000, key="refund:rf_a:1")) == APPROVED_REFUND
    again = sandbox.call(1051, key="refund:rf_a:1", kind="reversal")
    assert sandbox.acquirer.refund(again) == APPROVED_REFUND
    assert sandbox.rows()["refund:rf_a:1"] == ("approved", 1000, CAPTURE, "refund")


def test_a_lost_answer_is_recorded_as_refunded_and_the_resend_settles_it_once() -> None:
    sandbox = Sandbox()
    sandbox.capture(10_000)
    call = sandbox.call(1099)
    lost = sandbox.acquirer.refund(call)
    assert lost.result is RefundResult.UNKNOWN
    assert sandbox.ledger.refunded(CAPTURE) == 1099  # the money moved
    assert sandbox.acquirer.refund_status(call) == APPROVED_REFUND
    assert sandbox.acquirer.refund_status(call) == APPROVED_REFUND
    assert sandbox.ledger.refunded(CAPTURE) == 1099


def test_an_attempt_never_received_is_processed_when_first_asked_about() -> None:
    sandbox = Sandbox()
    sandbox.capture(10_000)
    call = sandbox.call(2500, kind="reversal")
    assert sandbox.acquirer.refund_status(call) == RefundOutcome(RefundResult.APPROVED, "REVERSED")
    assert sandbox.acquirer.times_sent(call.idempotency_key) == 0
    assert sandbox.acquirer.refund(call) == RefundOutcome(RefundResult.APPROVED, "REVERSED")
    assert sandbox.ledger.refunded(CAPTURE) == 2500


def test_a_refund_of_no_approved_capture_is_declined() -> None:
    sandbox = Sandbox()
    no_such = RefundOutcome(RefundResult.DECLINED, "No such capture")
    assert sandbox.acquirer.refund(sandbox.call(1000)) == no_such
    # a declined charge is no capture either
    declined = MitCharge(
        Mode.SANDBOX,
        CardNumber("5200000000001005"),
        Expiry(12, 2030),
        Money(1051, "GBP"),
        "charge:pi_2:1",
        "nt_1",
        10.0,
    )
    assert sandbox.acquirer.charge(declined).result is ChargeResult.DECLINED
    assert sandbox.acquirer.refund(sandbox.call(1000, capture_key="charge:pi_2:1")) == no_such
    # nor is a refund's own key
    sandbox.capture()
    assert sandbox.acquirer.refund(sandbox.call(1000, key="refund:rf_x:1")) == APPROVED_REFUND
    assert sandbox.acquirer.refund(sandbox.call(1000, capture_key="refund:rf_x:1")) == no_such
    # the decline stands for its key, even once the capture exists
    early = sandbox.call(1000, capture_key="charge:pi_3:1")
    assert sandbox.acquirer.refund(early) == no_such
    sandbox.capture(key="charge:pi_3:1")
    assert sandbox.acquirer.refund_status(early) == no_such


def test_refunds_past_the_captured_amount_are_declined() -> None:
    sandbox = Sandbox()
    sandbox.capture(10_000)
    exceeds = RefundOutcome(RefundResult.DECLINED, "Amount exceeds the capture")
    assert sandbox.acquirer.refund(sandbox.call(10_001)) == exceeds
    assert sandbox.acquirer.refund(sandbox.call(6000)) == APPROVED_REFUND
    assert sandbox.acquirer.refund(sandbox.call(4001, kind="reversal")) == exceeds
    assert sandbox.acquirer.refund(sandbox.call(1051)).result is RefundResult.DECLINED
    assert sandbox.acquirer.refund(sandbox.call(4000, kind="reversal")) == RefundOutcome(
        RefundResult.APPROVED, "REVERSED"
    )
    assert sandbox.ledger.refunded(CAPTURE) == 10_000
    assert sandbox.acquirer.refund(sandbox.call(1)) == exceeds
    # the backstop comes before the amount's trigger: a lost answer of nothing refunded
    over = sandbox.call(1099)
    assert sandbox.acquirer.refund(over).result is RefundResult.UNKNOWN
    assert sandbox.acquirer.refund_status(over) == exceeds
    assert sandbox.ledger.refunded(CAPTURE) == 10_000


def test_the_ledger_knows_the_capture_and_its_amount() -> None:
    sandbox = Sandbox()
    assert sandbox.ledger.capture(CAPTURE) is None
    sandbox.capture(2345)
    assert sandbox.ledger.capture(CAPTURE) == Capture(CAPTURE, 2345)
    assert sandbox.rows()[CAPTURE] == ("approved", 2345, None, "charge")
    assert sandbox.ledger.refunded(CAPTURE) == 0


def test_a_charges_key_reused_for_a_refund_is_declined_never_replayed() -> None:
    sandbox = Sandbox()
    sandbox.capture()
    reused = sandbox.acquirer.refund(sandbox.call(1000, key=CAPTURE))
    assert reused.result is RefundResult.DECLINED
    assert sandbox.rows()[CAPTURE] == ("approved", 10_000, None, "charge")
    assert sandbox.ledger.refunded(CAPTURE) == 0


def test_prod_refunds_are_refused_unless_allowed_and_then_get_no_triggers() -> None:
    refused = Sandbox()
    call = refused.call(1000, mode=Mode.PROD)
    with pytest.raises(AcquirerRefused):
        refused.acquirer.refund(call)
    with pytest.raises(AcquirerRefused):
        refused.acquirer.refund_status(call)
    assert refused.rows() == {}

    allowed = Sandbox(allow_prod=True)
    allowed.capture(10_000, mode=Mode.PROD)
    assert allowed.acquirer.refund(allowed.call(1051, mode=Mode.PROD)) == APPROVED_REFUND
    lost = allowed.call(1099, mode=Mode.PROD)
    assert allowed.acquirer.refund(lost) == APPROVED_REFUND  # no lost answer either
    exceeds = allowed.acquirer.refund(allowed.call(10_000 - 1051 - 1099 + 1, mode=Mode.PROD))
    assert exceeds == RefundOutcome(RefundResult.DECLINED, "Amount exceeds the capture")


def test_a_refund_call_is_a_refund_or_a_reversal() -> None:
    with pytest.raises(ValueError, match="kind"):
        RefundCall(Mode.SANDBOX, "chargeback", Money(1, "GBP"), "k", CAPTURE, 1.0)


# -- through build_pci's refunder, after a charge captured by the service ------------------------


def _captured(world: World, value: int = 5000) -> tuple[str, str]:
    si_id = world.authorized()
    pi_id = world.pi(si_id, value)
    world.services.payment_intents.charge(world.account, pi_id)
    assert world.services.payment_intents.get(world.account, pi_id).status is PI.CAPTURED
    return pi_id, f"charge:{pi_id}:1"


def _request(world: World, value: int, key: str, capture_key: str, kind: str) -> RefundRequest:
    return RefundRequest(
        Mode.SANDBOX, world.account.id, kind, Money(value, "GBP"), key, capture_key
    )


def test_the_pci_sides_charger_refunds_a_captured_charge_by_its_key() -> None:
    world = World()
    refunder = world.pci.charger
    _, capture_key = _captured(world, 5000)
    first = _request(world, 2000, "refund:rf_1:1", capture_key, "refund")
    assert refunder.refund(first) == APPROVED_REFUND
    assert refunder.refund_status(first) == APPROVED_REFUND
    lost = _request(world, 1099, "refund:rf_2:1", capture_key, "reversal")
    assert refunder.refund(lost).result is RefundResult.UNKNOWN
    assert refunder.refund_status(lost) == RefundOutcome(RefundResult.APPROVED, "REVERSED")
    over = _request(world, 1902, "refund:rf_3:1", capture_key, "refund")
    assert refunder.refund(over) == RefundOutcome(
        RefundResult.DECLINED, "Amount exceeds the capture"
    )
    ledger = world.storage.tables.sandbox_ledger
    assert ledger[capture_key][6] == 5000
    approved = [row[6] for row in ledger.values() if row[7] == capture_key and row[1] == "approved"]
    assert sorted(approved) == [1099, 2000]


def test_the_refunder_lets_the_acquirers_exception_through() -> None:
    world = World()
    _, capture_key = _captured(world)
    request = RefundRequest(
        Mode.PROD, world.account.id, "refund", Money(100, "GBP"), "refund:rf_1:1", capture_key
    )
    with pytest.raises(AcquirerRefused):
        world.pci.charger.refund(request)
    with pytest.raises(AcquirerRefused):
        world.pci.charger.refund_status(request)
    bad_kind = _request(world, 100, "refund:rf_2:1", capture_key, "chargeback")
    with pytest.raises(ValueError, match="kind"):
        world.pci.charger.refund(bad_kind)


def test_the_refund_call_carries_the_request_and_no_card_data() -> None:
    sent: list[RefundCall] = []

    class Recording:
        def refund(self, call: RefundCall) -> RefundOutcome:
            sent.append(call)
            return APPROVED_REFUND

        def refund_status(self, call: RefundCall) -> RefundOutcome:
            sent.append(call)
            return RefundOutcome(RefundResult.DECLINED, "no")

    refunder = AcquirerRefunder(Recording())  # type: ignore[arg-type]
    request = RefundRequest(
        Mode.SANDBOX, "acc_1", "reversal", Money(700, "EUR"), "refund:rf_9:2", CAPTURE, 3.5
    )
    assert refunder.refund(request) == APPROVED_REFUND
    assert refunder.refund_status(request) == RefundOutcome(RefundResult.DECLINED, "no")
    expected = RefundCall(
        Mode.SANDBOX, "reversal", Money(700, "EUR"), "refund:rf_9:2", CAPTURE, 3.5
    )
    assert sent == [expected, expected]
    assert set(RefundCall.__dataclass_fields__) == {
        "mode",
        "kind",
        "amount",
        "idempotency_key",
        "capture_key",
        "timeout",
    }
