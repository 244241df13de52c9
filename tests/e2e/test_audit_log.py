"""The audit log on a real server, read with ``cardkeep audit tail``: the key made by the CLI, the
card number used by a PCI create and by a charge, and a refused key (written at shutdown, its
minute still open), on both engines; no card number in any entry."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.e2e.harness import Merchant, run_server
from tests.merchant import APPROVED_CARD, TEST_PANS

BAD_KEY = "sk_sandbox_" + "x" * 43


def cardkeep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardkeep", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def _where(data_dir: Path, database_url: str | None) -> list[str]:
    where = ["--data-dir", str(data_dir)]
    return where + (["--database-url", database_url] if database_url else [])


def _lines(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.splitlines() if line]


def test_a_card_flow_and_a_bad_key_are_in_the_audit_log(
    tmp_path: Path, database_url: str | None
) -> None:
    data_dir = tmp_path / "data"
    where = _where(data_dir, database_url)
    with run_server(data_dir, database_url=database_url) as server:
        made = cardkeep("accounts", "create", "shop", *where)
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        key_id = next(w for w in made.stderr.split() if w.startswith("key_"))
        merchant = Merchant(server, key)
        si = merchant.authorized_si()
        pi = merchant.create_pi(si["id"]).json()
        assert merchant.charge(pi["id"]).json()["status"] == "Successful"
        intruder = Merchant(server, BAD_KEY)
        for _ in range(3):
            assert intruder.get_si(si["id"]).status_code == 401
        merchant.close()
        intruder.close()
        account_id = next(
            line[6] for line in _lines(cardkeep("audit", "tail", *where).stdout) if line[6] != "-"
        )
        rows = server.sql("SELECT actor, action, subject, outcome, count, detail FROM audit_log")
    # The server has stopped: the refused key's minute, still open, was written at shutdown.
    tail = cardkeep("audit", "tail", "--limit", "10", *where)
    assert tail.returncode == 0, tail.stderr
    lines = _lines(tail.stdout)
    actor = f"account:{account_id}"
    unknown = "unknown:" + hashlib.sha256(BAD_KEY.encode()).hexdigest()[:12]
    assert [line[1:7] for line in lines] == [
        ["cli", "api_key.created", key_id, "ok", "1", account_id],
        [actor, "card.authorization", si["id"], "approved", "1", account_id],
        [actor, "card.charge", pi["id"], "approved", "1", account_id],
        [unknown, "auth.failed", "authentication", "denied", "3", "-"],
    ]
    authorization, charge = lines[1][7], lines[2][7]
    assert "card=520000******1005" in authorization
    assert "last4=1005" in authorization
    vault_token = next(w for w in authorization.split() if w.startswith("vault_token="))
    assert vault_token in charge  # the same card, by its token
    assert f"setup_intent={si['id']}" in charge
    mine = _lines(cardkeep("audit", "tail", "--account", account_id, *where).stdout)
    assert [line[2] for line in mine] == ["api_key.created", "card.authorization", "card.charge"]
    last = _lines(cardkeep("audit", "tail", "--limit", "1", *where).stdout)
    assert [line[2] for line in last] == ["auth.failed"]
    stored = repr(rows)
    for pan in TEST_PANS:
        assert pan not in stored
    assert key not in stored
    assert BAD_KEY not in stored
    assert APPROVED_CARD not in tail.stdout


def test_tail_follow_prints_entries_as_they_are_appended(tmp_path: Path) -> None:
    where = _where(tmp_path, None)
    made = cardkeep("accounts", "create", "shop", *where)
    assert made.returncode == 0, made.stderr
    account_id = _lines(cardkeep("audit", "tail", *where).stdout)[0][6]
    cmd = [sys.executable, "-m", "cardkeep", "audit", "tail", "--follow", "--interval", "0.1"]
    follower = subprocess.Popen(
        [*cmd, "--limit", "1", *where], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    stopper = threading.Timer(30, follower.terminate)  # a read that hangs ends with the process
    stopper.start()
    try:
        assert follower.stdout is not None
        assert "\tapi_key.created\t" in follower.stdout.readline()
        new = cardkeep("accounts", "new-key", account_id, *where)
        assert new.returncode == 0, new.stderr
        new_id = next(w for w in new.stderr.split() if w.startswith("key_"))
        revoked = cardkeep("accounts", "revoke-key", new_id, *where)
        assert revoked.returncode == 0, revoked.stderr
        seen = [follower.stdout.readline().split("\t") for _ in range(2)]
        assert [(line[2], line[3]) for line in seen] == [
            ("api_key.created", new_id),
            ("api_key.revoked", new_id),
        ]
    finally:
        stopper.cancel()
        follower.terminate()
        follower.wait(timeout=10)
