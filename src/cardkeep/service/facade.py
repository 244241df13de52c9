"""The use cases wired together: what the listeners and the CLI are given."""

from __future__ import annotations

from dataclasses import dataclass

from cardkeep.service.accounts import Accounts
from cardkeep.service.audit import Audit
from cardkeep.service.card_limits import CardLimits
from cardkeep.service.changes import Changes
from cardkeep.service.context import Context
from cardkeep.service.heartbeat import Heartbeats
from cardkeep.service.idempotency import Idempotency
from cardkeep.service.payment_intents import PaymentIntents
from cardkeep.service.ports import Destinations, SecretBox
from cardkeep.service.refunds import Refunds
from cardkeep.service.setup_intents import SetupIntents
from cardkeep.service.sweeper import Sweeper
from cardkeep.service.webhooks import Webhooks


@dataclass(frozen=True)
class Services:
    ctx: Context
    accounts: Accounts
    setup_intents: SetupIntents
    payment_intents: PaymentIntents
    refunds: Refunds
    sweeper: Sweeper
    card_schemes: tuple[str, ...]
    # The background loops of this process, for /health (shared by both listeners).
    heartbeats: Heartbeats
    idempotency: Idempotency
    webhooks: Webhooks
    audit: Audit
    card_limits: CardLimits

    @classmethod
    def build(
        cls,
        ctx: Context,
        card_schemes: tuple[str, ...],
        box: SecretBox,
        destinations: Destinations,
        heartbeats: Heartbeats | None = None,
    ) -> Services:
        changes = Changes(ctx.storage, ctx.event_id)
        sis = SetupIntents(ctx, changes)
        pis = PaymentIntents(ctx, changes)
        refunds = Refunds(ctx, changes)
        idempotency = Idempotency(ctx.storage, ctx.clock, lease=ctx.policy.idempotency_lease)
        audit = Audit(ctx)
        card_limits = CardLimits(ctx)
        sweeper = Sweeper(ctx, sis, pis, refunds, idempotency, audit, card_limits)
        beats = heartbeats or Heartbeats(ctx.clock)
        webhooks = Webhooks(ctx, box, destinations)
        return cls(
            ctx,
            Accounts(ctx),
            sis,
            pis,
            refunds,
            sweeper,
            card_schemes,
            beats,
            idempotency,
            webhooks,
            audit,
            card_limits,
        )
