"""Accounts and their secret keys: create, authenticate, list, add and revoke keys, and the sandbox
clock.

Keys are random, shown once, stored only as SHA-256 hashes and compared in constant time. Each has
a public id (``key_…``) that names it in listings and revocations. Nothing here keeps an answer
between calls: every authentication reads the database, so a revocation holds from the next
request in every process. A key made or revoked is audited in the same transaction; a refused key
is counted (``service.audit``), never written on the request path.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import NoReturn

from cardkeep.domain import origins
from cardkeep.domain.account import Account, ApiKey, Mode
from cardkeep.domain.audit import CLI, Action, Outcome
from cardkeep.domain.errors import NotFound, SandboxOnly, Unauthorized, ValidationFailed
from cardkeep.domain.ids import Prefix
from cardkeep.service.audit import record, unknown_key
from cardkeep.service.context import Context, secret_hash
from cardkeep.service.idempotency import RecoveryPoint, kept
from cardkeep.service.ports import UnitOfWork

MAX_ADVANCE_SECONDS = 315_360_000
KEY_PREFIXES = ("sk_sandbox_", "sk_prod_")


class Accounts:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def create(self, name: str, mode: Mode, actor: str = CLI) -> tuple[Account, str, str]:
        """A new account, its first key's id and the secret key (the only time it is visible).
        ``actor`` is who asked, for the audit log."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise ValidationFailed.one("Name", "The account name must be 1 to 100 characters.")
        now = self._ctx.clock.now()
        account = Account(self._ctx.ids.new(Prefix.ACCOUNT), name, mode, now)
        key_id, key = self._new_secret(mode)
        with self._ctx.storage.transaction(write=True) as uow:
            uow.accounts.add(account)
            uow.accounts.add_key(key_id, secret_hash(key), account.id, now)
            self._audit(uow, actor, Action.API_KEY_CREATED, key_id, account.id)
            uow.commit()
        return account, key_id, key

    def keys(self, account_id: str) -> tuple[ApiKey, ...]:
        """The account's keys, revoked ones included, oldest first: ids and dates only."""
        with self._ctx.storage.transaction(write=False) as uow:
            if uow.accounts.get(account_id) is None:
                raise NotFound(f"No account with id {account_id}.")
            return uow.accounts.keys(account_id)

    def new_key(self, account_id: str, actor: str = CLI) -> tuple[str, str]:
        """Another secret key for the account, beside its others: its id and the secret key (the
        only time it is visible)."""
        with self._ctx.storage.transaction(write=True) as uow:
            account = uow.accounts.get(account_id)
            if account is None:
                raise NotFound(f"No account with id {account_id}.")
            key_id, key = self._new_secret(account.mode)
            uow.accounts.add_key(key_id, secret_hash(key), account.id, self._ctx.clock.now())
            self._audit(uow, actor, Action.API_KEY_CREATED, key_id, account.id)
            uow.commit()
        return key_id, key

    def revoke_key(self, key_id_or_secret: str, actor: str = CLI) -> ApiKey:
        """Revoke the key named by its id or by the secret key itself; from the moment this
        returns, every request with it is 401. A key revoked already stays as it was."""
        is_secret = key_id_or_secret.startswith(KEY_PREFIXES)
        with self._ctx.storage.transaction(write=True) as uow:
            if is_secret:
                key = uow.accounts.key_of_hash(secret_hash(key_id_or_secret))
            else:
                key = uow.accounts.key(key_id_or_secret)
            if key is None:
                # Only a key id is echoed: never a secret key, even a wrong or mistyped one.
                if is_secret:
                    named = "that secret key"
                elif key_id_or_secret.startswith(f"{Prefix.API_KEY.value}_"):
                    named = f"id {key_id_or_secret}"
                else:
                    named = "that id or secret key"
                raise NotFound(f"No API key with {named}.")
            if key.active:
                uow.accounts.revoke_key(key.id, self._ctx.clock.now())
                key = uow.accounts.key(key.id) or key
                self._audit(uow, actor, Action.API_KEY_REVOKED, key.id, key.account_id)
                uow.commit()
        return key

    def _audit(
        self, uow: UnitOfWork, actor: str, action: Action, key_id: str, account_id: str
    ) -> None:
        record(
            self._ctx,
            uow,
            actor=actor,
            action=action,
            subject=key_id,
            outcome=Outcome.OK,
            account_id=account_id,
        )

    def _new_secret(self, mode: Mode) -> tuple[str, str]:
        return self._ctx.ids.new(Prefix.API_KEY), f"sk_{mode.value}_{self._ctx.ids.secret()}"

    def list(self) -> list[Account]:
        with self._ctx.storage.transaction(write=False) as uow:
            return uow.accounts.list()

    def origins(self, account_id: str) -> tuple[Account, tuple[str, ...]]:
        """The account and the origins it lists (empty: none set)."""
        with self._ctx.storage.transaction(write=False) as uow:
            account = uow.accounts.get(account_id)
            if account is None:
                raise NotFound(f"No account with id {account_id}.")
            return account, uow.accounts.origins(account_id)

    def set_origins(self, account_id: str, wanted: Sequence[str]) -> tuple[str, ...]:
        """Replace the account's origins (normalised); an empty list clears them."""
        with self._ctx.storage.transaction(write=True) as uow:
            account = uow.accounts.get(account_id)
            if account is None:
                raise NotFound(f"No account with id {account_id}.")
            normal = origins.normalise_all(wanted, account.mode)
            uow.accounts.set_origins(account_id, normal)
            uow.commit()
        return normal

    def authenticate(self, key: str) -> Account:
        """The account of an active secret key; anything else is ``Unauthorized``, counted
        for the audit log by the key it names (a revoked key's id) or by ``unknown_key``."""
        if not key.startswith(KEY_PREFIXES):
            self._refused(unknown_key(key), None)
        wanted = secret_hash(key)
        with self._ctx.storage.transaction(write=False) as uow:
            found = uow.accounts.by_key_hash(wanted)
            # The lookup is by hash; the final comparison is constant-time all the same.
            if found is not None and hmac.compare_digest(found[0], wanted):
                return found[1]
            known = uow.accounts.key_of_hash(wanted)  # revoked (or revoked meanwhile)
        if known is None:
            self._refused(unknown_key(key), None)
        self._refused(f"key:{known.id}", known.account_id)

    def _refused(self, who: str, account_id: str | None) -> NoReturn:
        self._ctx.failures.note(who, account_id, self._ctx.clock.now())
        raise Unauthorized("The secret key is missing or not valid.")

    def clock(self, account: Account) -> tuple[datetime, int]:
        self._sandbox_only(account)
        return self._ctx.now(account), account.clock_offset_us // 1_000_000

    def advance_clock(
        self,
        account: Account,
        seconds: int,
        point: RecoveryPoint[tuple[datetime, int]] | None = None,
    ) -> tuple[datetime, int]:
        self._sandbox_only(account)
        if not 1 <= seconds <= MAX_ADVANCE_SECONDS:
            raise ValidationFailed.one(
                "Seconds", f"The field Seconds must be between 1 and {MAX_ADVANCE_SECONDS}."
            )
        limit_us = int(self._ctx.policy.max_clock_offset.total_seconds()) * 1_000_000
        with self._ctx.storage.transaction(write=True) as uow:
            current = uow.accounts.get(account.id)
            if current is None:
                raise NotFound("The account does not exist.")
            offset = current.clock_offset_us + seconds * 1_000_000
            if offset > limit_us:
                raise ValidationFailed.one(
                    "Seconds",
                    "The sandbox clock may move at most 100 years (3155760000 seconds) in all; "
                    f"it has moved {current.clock_offset_us // 1_000_000} seconds so far.",
                )
            uow.accounts.set_clock_offset(account.id, offset)
            moved = Account(account.id, account.name, account.mode, account.created_at, offset)
            answer = kept(point, uow, (self._ctx.now(moved), offset // 1_000_000))
            uow.commit()
        return answer

    @staticmethod
    def _sandbox_only(account: Account) -> None:
        if account.mode is not Mode.SANDBOX:
            raise SandboxOnly("The sandbox endpoints are for sandbox keys only.")
