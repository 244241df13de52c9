"""Rotation of the vault's keys against real processes: ``cardkeep keys rotate`` run as a
subprocess while a server keeps creating and charging cards; a rotation killed after its first
batch and run again; a data directory whose cards were sealed under the legacy single key."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardkeep.cde.keys import Keyring, legacy_key_id, write_keyring
from tests.e2e.harness import APPROVED_CARD, Merchant, Server, run_server, workers_of


def keyring(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A keyring file outside the data directory: kek-1 current, kek-2 ready."""
    path = tmp_path / "keys" / "keyring.json"
    path.parent.mkdir(mode=0o700)
    k1, k2 = os.urandom(32), os.urandom(32)
    write_keyring(path, Keyring("kek-1", {"kek-1": k1, "kek-2": k2}))
    return path, k1, k2


def cli_args(server: Server, *args: str) -> list[str]:
    cmd = [sys.executable, "-m", "cardkeep", *args, "--data-dir", str(server.data_dir)]
    if server.database_url is not None:
        cmd += ["--database-url", server.database_url]
    return cmd


def cli(
    server: Server, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_args(server, *args),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def charge(merchant: Merchant, si_id: str) -> str:
    pi = merchant.create_pi(si_id)
    assert pi.status_code == 200, pi.text
    r = merchant.charge(pi.json()["id"])
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def deks(server: Server) -> dict[str, tuple[str, str]]:
    """DEK id -> (KEK id, status)."""
    return {
        row[0]: (row[1], row[2]) for row in server.sql("SELECT id, kek_id, status FROM vault_deks")
    }


def card_keys(server: Server) -> list[str]:
    return [row[0] for row in server.sql("SELECT key_id FROM vault_cards")]


class Load:
    """Merchants creating cards and charging earlier ones, until stopped; every answer that is
    not a success is kept."""

    def __init__(self, merchants: list[Merchant], kept: dict[str, list[str]]) -> None:
        self.merchants = merchants
        self.kept = kept  # account key -> its uncharged setup intents
        self.failures: list[Any] = []
        self.charged = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(m,)) for m in merchants]

    def _run(self, merchant: Merchant) -> None:
        rng = random.Random(merchant.key)
        while not self._stop.is_set():
            try:
                si = merchant.pci_create()
                if si.status_code != 200 or si.json()["status"] != "Authorized":
                    self.failures.append(("create", si.status_code, si.text))
                    continue
                self.kept[merchant.key].append(si.json()["id"])
                pool = self.kept[merchant.key]
                if len(pool) > 5 and rng.random() < 0.6:
                    si_id = pool.pop(rng.randrange(len(pool) - 1))
                    status = charge(merchant, si_id)
                    if status != "Successful":
                        self.failures.append(("charge", si_id, status))
                    self.charged += 1
            except Exception as exc:
                self.failures.append(("error", repr(exc)))

    @contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(60)


def test_rotation_under_load_keeps_every_card_charging(
    tmp_path: Path, database_url: str | None
) -> None:
    path, k1, k2 = keyring(tmp_path)
    env = {"CARDKEEP_KEYRING": str(path)}
    with run_server(tmp_path / "data", env=env, database_url=database_url, workers=2) as server:
        merchants = [Merchant(server, key) for key in server.create_accounts(3, "shop")]
        kept: dict[str, list[str]] = {m.key: [] for m in merchants}
        for m in merchants:
            kept[m.key] += [m.authorized_si()["id"] for _ in range(8)]
        assert {kek for kek, _ in deks(server).values()} == {"kek-1"}
        old_deks = set(deks(server))
        with Load(merchants, kept).running() as load:
            kek = cli(server, "keys", "rotate", "--kek", "kek-2", "--batch", "1", env=env)
            assert kek.returncode == 0, kek.stderr
            assert "rewrapped" in kek.stdout
            dek = cli(server, "keys", "rotate", "--deks", "--batch", "3", env=env)
            assert dek.returncode == 0, dek.stderr
        assert load.failures == []
        assert load.charged > 0
        # Every key wrapped under the new KEK; every card under its account's current DEK.
        stored = deks(server)
        assert {kek for kek, _ in stored.values()} == {"kek-2"}
        current = {d for d, (_, status) in stored.items() if status == "current"}
        assert set(card_keys(server)) <= current
        assert old_deks.isdisjoint(current)
        assert {stored[d][1] for d in old_deks} == {"retired"}
        listing = cli(server, "keys", "list", env=env)
        assert "kek-2\tkek\tcurrent\t" in listing.stdout
        assert "kek-1\tkek\tavailable\t0 deks" in listing.stdout
        # The old keys retire; the servers, reading the changed keyring, keep charging.
        for old in sorted(old_deks):
            r = cli(server, "keys", "retire", old, env=env)
            assert r.returncode == 0, r.stderr
        r = cli(server, "keys", "retire", "kek-1", env=env)
        assert r.returncode == 0, r.stderr
        assert "kek-1" not in path.read_text()
        assert path.stat().st_mode & 0o777 == 0o600
        for m in merchants:
            for si_id in kept[m.key]:
                assert charge(m, si_id) == "Successful"
        # A new account's key is wrapped under the new KEK, without a restart.
        made = cli(server, "accounts", "create", "late", env=env)
        assert made.returncode == 0, made.stderr
        late = Merchant(server, made.stdout.strip())
        late.authorized_si()
        assert {kek for kek, _ in deks(server).values()} == {"kek-2"}
        raw = server.stored_bytes()
        assert APPROVED_CARD.encode() not in raw
        assert k1 not in raw
        assert k2 not in raw
        for m in [*merchants, late]:
            m.close()


def test_a_rotation_killed_after_its_first_batch_finishes_when_run_again(
    tmp_path: Path, database_url: str | None
) -> None:
    path, _, _ = keyring(tmp_path)
    env = {"CARDKEEP_KEYRING": str(path)}
    with run_server(tmp_path / "data", env=env, database_url=database_url) as server:
        merchants = [Merchant(server, key) for key in server.create_accounts(3, "shop")]
        sis = {m.key: [m.authorized_si()["id"] for _ in range(4)] for m in merchants}
        slow = {**env, "CARDKEEP_ROTATION_PAUSE": "60"}
        for args, first_batch in (
            (("--kek", "kek-2"), "rewrapped 1 data-encryption keys"),
            (("--deks",), "re-sealed 1 cards"),
        ):
            proc = subprocess.Popen(
                cli_args(server, "keys", "rotate", *args, "--batch", "1"),
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
                env={**os.environ, **slow},
            )
            assert proc.stderr is not None
            for line in proc.stderr:
                if first_batch in line:
                    break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if args[0] == "--kek":  # one key moved, the others not yet
                assert sorted(k for k, _ in deks(server).values()) == ["kek-1", "kek-1", "kek-2"]
            else:
                assert len(set(card_keys(server))) == 4  # three old DEKs and a new one
            # Meanwhile the service charges, whatever key a card is under.
            for m in merchants:
                assert charge(m, sis[m.key].pop()) == "Successful"
            again = cli(server, "keys", "rotate", *args, env=env)
            assert again.returncode == 0, again.stderr
        stored = deks(server)
        assert {kek for kek, _ in stored.values()} == {"kek-2"}
        current = {d for d, (_, status) in stored.items() if status == "current"}
        assert len(current) == 3
        assert set(card_keys(server)) <= current
        for old in sorted(set(stored) - current):
            assert stored[old][1] == "retired"
            assert cli(server, "keys", "retire", old, env=env).returncode == 0
        for m in merchants:
            for si_id in sis[m.key]:
                assert charge(m, si_id) == "Successful"
            m.close()


def test_cards_sealed_under_the_legacy_key_charge_after_upgrade_and_move_to_deks(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    path, _, _ = keyring(tmp_path)
    env = {"CARDKEEP_KEYRING": str(path)}
    with run_server(data, env=env) as server:
        key = server.create_account()
        merchant = Merchant(server, key)
        sis = [merchant.authorized_si()["id"] for _ in range(3)]
        merchant.close()
    # The data directory as the release before envelope encryption left it: vault.key, and every
    # card sealed under it directly; no data-encryption keys.
    legacy = os.urandom(32)
    (data / "vault.key").write_bytes(base64.b64encode(legacy) + b"\n")
    legacy_id = legacy_key_id(legacy)
    for token, account in server.sql("SELECT token, account_id FROM vault_cards"):
        nonce = os.urandom(12)
        ct = AESGCM(legacy).encrypt(
            nonce, APPROVED_CARD.encode(), f"cardkeep-vault-v1|{token}|{account}".encode()
        )
        server.sql(
            "UPDATE vault_cards SET key_id = ?, nonce = ?, ciphertext = ? WHERE token = ?",
            (legacy_id, nonce, ct, token),
        )
    server.sql("DELETE FROM vault_deks")
    with run_server(data, env=env) as server:
        merchant = Merchant(server, key)
        assert charge(merchant, sis[0]) == "Successful"
        listing = cli(server, "keys", "list", env=env)
        assert f"{legacy_id}\tlegacy\tloaded\t2 cards" in listing.stdout
        refused = cli(server, "keys", "retire", legacy_id, env=env)
        assert refused.returncode == 1
        assert "2 cards are still sealed under the legacy key" in refused.stderr
        moved = cli(server, "keys", "rotate", "--deks", env=env)
        assert moved.returncode == 0, moved.stderr
        assert "cards re-sealed: 2" in moved.stdout
        assert all(k.startswith("dek_") for k in card_keys(server))
        retired = cli(server, "keys", "retire", legacy_id, env=env)
        assert retired.returncode == 0, retired.stderr
        assert not (data / "vault.key").exists()
        merchant.close()
    with run_server(data, env=env) as server:  # no legacy key any more
        merchant = Merchant(server, key)
        assert [charge(merchant, si) for si in sis[1:]] == ["Successful", "Successful"]
        merchant.close()


def test_sighup_reads_the_keyring_again_in_the_pci_process(tmp_path: Path) -> None:
    """SIGHUP to ``serve`` reaches the PCI process, which reads the keyring again; the API
    workers (which hold none) ignore it and keep running."""
    path, k1, k2 = keyring(tmp_path)
    env = {"CARDKEEP_KEYRING": str(path)}
    with run_server(tmp_path / "data", env=env, workers=2) as server:
        processes = workers_of(server.proc.pid)
        first = Merchant(server, server.create_account("first"))
        first.authorized_si()
        # Rewritten in place, same size, same inode, same modification time: nothing for the
        # workers' once-a-second look to notice; only the signal tells them.
        before = path.stat()
        with path.open("r+") as fh:
            fh.write(Keyring("kek-2", {"kek-1": k1, "kek-2": k2}).to_json())
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = path.stat()
        assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
        server.proc.send_signal(signal.SIGHUP)
        made = cli(server, "accounts", "create", "second", env=env)
        assert made.returncode == 0, made.stderr
        second = Merchant(server, made.stdout.strip())
        deadline = time.monotonic() + 10
        while server.log_text().count('"keyring_loaded"') < 1:  # the PCI process
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.05)
        second.authorized_si()
        assert sorted(kek for kek, _ in deks(server).values()) == ["kek-1", "kek-2"]
        assert server.proc.poll() is None  # SIGHUP stops nothing
        assert workers_of(server.proc.pid) == processes  # and kills none
        assert server.log_text().count('"keyring_loaded"') == 1  # no API worker has a keyring
        for m in (first, second):
            m.close()
