"""The keys kept outside the database that every process and instance on one database must share
(the Idempotency-Key seal, the seal of webhook secrets, the card fingerprints' key), checked when a
process starts.

A split deployment, or two instances on one PostgreSQL database, given different keys would fail
quietly and late: a retried request answered 422 as if its body had changed, webhook secrets one
side cannot open, card-testing counts that never meet. So the database keeps, per key, a check
value: HMAC-SHA256 of a fixed message under the key, which tells two keys apart without telling
anything of either. The first process to start writes it; a process whose key gives another value
refuses to start, naming the key and where it came from. Once written it is only read, so a start
takes no write lock for it.
"""

from __future__ import annotations

import hashlib
import hmac

from cardkeep.service.ports import Storage

CHECK_MESSAGE = b"cardkeep key check v1|"


class KeyMismatch(RuntimeError):
    """This process's key is not the one the database's other processes use."""


def check_value(name: str, material: bytes) -> str:
    return hmac.new(material, CHECK_MESSAGE + name.encode(), hashlib.sha256).hexdigest()


def check_shared_key(storage: Storage, name: str, material: bytes, source: str) -> None:
    """Record ``material``'s check value under ``name``, or raise KeyMismatch if the database
    already holds another (``source`` says where this process's key came from)."""
    mine = check_value(name, material)
    with storage.transaction(write=False) as uow:  # kept already, but on the first start
        kept = uow.key_checks.digest(name)
    if kept is None:
        with storage.transaction(write=True) as uow:
            uow.key_checks.record(name, mine)
            kept = uow.key_checks.digest(name)
            uow.commit()
    if kept != mine:
        raise KeyMismatch(
            f"the {name} key ({source}) is not the one this database's other processes use: "
            "every process and instance on one database must be given the same key"
        )
