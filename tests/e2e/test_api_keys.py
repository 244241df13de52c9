"""API keys as an operator manages them, against a real two-worker server on SQLite and PostgreSQL:
``cardkeep accounts keys / new-key / revoke-key`` run as commands, and the key they revoke is
refused by every worker on the first request each serves after the command returns, while the
account's other key keeps working on each. A database from before key ids gets them on upgrade."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from cardkeep.storage import postgres, sqlite
from cardkeep.storage.codec import micros
from cardkeep.storage.migrations import load as load_migrations
from tests.e2e.harness import SI_FIELDS, VERSION, Server, card, processes_of, run_server
from tests.e2e.test_cli import cardkeep
from tests.factories import T0

KEY_LINE = re.compile(r"(key_[A-Za-z0-9_-]+)\t(\S+Z)\t(active|revoked \S+Z)")

# (status, the worker process that answered)
Answer = tuple[int, int]


def _db_args(server: Server) -> list[str]:
    args = ["--data-dir", str(server.data_dir)]
    return args + (["--database-url", server.database_url] if server.database_url else [])


def _run(server: Server, *args: str) -> tuple[str, str]:
    r = cardkeep("accounts", *args, *_db_args(server))
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _owner(port: int, client_port: int, workers: set[int]) -> int:
    """The worker holding the server side of the connection from ``client_port`` to ``port``."""
    wanted = (f"0100007F:{port:04X}", f"0100007F:{client_port:04X}")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        inode = next(
            (
                fields[9]
                for fields in (
                    line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                )
                if (fields[1], fields[2]) == wanted
            ),
            None,
        )
        if inode is not None:
            for pid in workers:
                try:
                    fds = list(Path(f"/proc/{pid}/fd").iterdir())
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if fd.readlink().name == f"socket:[{inode}]":
                            return pid
                    except OSError:
                        continue
        time.sleep(0.02)
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def _ask(
    port: int, workers: set[int], key: str, method: str, path: str, body: object = None
) -> Answer:
    """One request over a new connection: its status and the worker that answered it (found
    while the kept-alive connection is still open)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": f"Basic {key}", "version": VERSION}
        payload = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body)
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        doc = json.loads(response.read() or b"null")
        if response.status == 401:
            assert doc["code"] == "unauthorized", doc
        assert conn.sock is not None
        return response.status, _owner(port, conn.sock.getsockname()[1], workers)
    finally:
        conn.close()


def _each_worker(ask: Callable[[], Answer], workers: set[int]) -> list[Answer]:
    """Requests over new connections until every worker has answered at least one; all of them."""
    answers: list[Answer] = []
    while {pid for _, pid in answers} != workers:
        assert len(answers) < 200, f"the requests never reached every worker: {answers}"
        answers.append(ask())
    return answers


def test_a_revoked_key_is_refused_by_every_worker_from_the_next_request(
    tmp_path: Path, database_url: str | None
) -> None:
    with run_server(tmp_path, workers=2, database_url=database_url) as server:
        workers = processes_of(server, "api", 2)
        pci_process = processes_of(server, "pci", 1)
        api, pci = _port(server.api_url), _port(server.pci_url)

        stdout, stderr = _run(server, "create", "Cafe")
        first = stdout.strip()
        first_id = re.search(r"^key id (key_[A-Za-z0-9_-]{22})$", stderr, re.MULTILINE)
        assert first_id is not None, stderr
        account = re.search(r"account (acc_\S+)", stderr)
        assert account is not None
        stdout, stderr = _run(server, "new-key", account[1])
        second = stdout.strip()
        assert re.fullmatch(r"sk_sandbox_[A-Za-z0-9_-]{43}", second)
        second_id = re.fullmatch(r"key id (key_[A-Za-z0-9_-]{22})\n", stderr)
        assert second_id is not None, stderr
        listing, _ = _run(server, "keys", account[1])
        lines = [KEY_LINE.fullmatch(line) for line in listing.splitlines()]
        assert [(m[1], m[3]) for m in lines if m] == [
            (first_id[1], "active"),
            (second_id[1], "active"),
        ]
        for secret in (first, second):
            assert secret not in listing
            assert secret.split("_", 2)[2] not in listing
            assert hashlib.sha256(secret.encode()).hexdigest() not in listing

        def clock(key: str) -> Callable[[], Answer]:
            return lambda: _ask(api, workers, key, "GET", "/sandbox/clock")

        def card_intake(key: str) -> Callable[[], Answer]:
            body = {**SI_FIELDS, "cardDetails": card()}
            return lambda: _ask(pci, pci_process, key, "POST", "/setup-intents", body)

        def everywhere(ask: Callable[[], Answer], api_side: bool) -> set[int]:
            """The statuses of requests until every process of the listener has answered."""
            return {status for status, _ in _each_worker(ask, workers if api_side else pci_process)}

        # Both keys work on every API worker and in the PCI process: each has just accepted the
        # first key when it is revoked.
        for key in (first, second):
            assert everywhere(clock(key), True) == {200}
            assert everywhere(card_intake(key), False) == {200}

        out, _ = _run(server, "revoke-key", first_id[1])
        revoked = re.fullmatch(rf"{first_id[1]}\trevoked (\S+Z)\n", out)
        assert revoked is not None, out
        # from here on, every request with the first key is 401 on every worker, the first one
        # each worker serves included; the second key still works on each
        assert everywhere(clock(first), True) == everywhere(card_intake(first), False) == {401}
        assert everywhere(clock(second), True) == everywhere(card_intake(second), False) == {200}

        # the second key, revoked by the secret itself; revoking again changes nothing
        out, _ = _run(server, "revoke-key", second)
        second_revoked = re.fullmatch(rf"{second_id[1]}\trevoked (\S+Z)\n", out)
        assert second_revoked is not None, out
        assert everywhere(clock(second), True) == everywhere(card_intake(second), False) == {401}
        for name in (first, first_id[1]):
            again, _ = _run(server, "revoke-key", name)
            assert again == f"{first_id[1]}\trevoked {revoked[1]}\n"
        listing, _ = _run(server, "keys", account[1])
        states = [m[3] for m in (KEY_LINE.fullmatch(line) for line in listing.splitlines()) if m]
        assert states == [f"revoked {revoked[1]}", f"revoked {second_revoked[1]}"]


def test_unknown_accounts_and_keys_are_one_line_errors(tmp_path: Path) -> None:
    r = cardkeep("accounts", "create", "Cafe", "--data-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    unknown_secret = "sk_sandbox_" + "B" * 43
    for args, message in (
        (["keys", "acc_nope"], "Error: No account with id acc_nope.\n"),
        (["new-key", "acc_nope"], "Error: No account with id acc_nope.\n"),
        (["revoke-key", "key_nope"], "Error: No API key with id key_nope.\n"),
        (["revoke-key", unknown_secret], "Error: No API key with that secret key.\n"),
    ):
        r = cardkeep("accounts", *args, "--data-dir", str(tmp_path))
        assert (r.returncode, r.stdout, r.stderr) == (1, "", message), args


def test_keys_stored_before_key_ids_get_one_and_can_be_revoked_by_it(
    tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade: a database migrated up to just before key ids, holding an account and its key
    (as the earlier cardkeep stored them), served by the new version."""
    engine = "postgres" if database_url else "sqlite"
    every = load_migrations(engine)
    earlier = every[: next(i for i, m in enumerate(every) if m.name == "key_ids")]
    secret = "sk_sandbox_" + "k" * 43
    rows = [
        "INSERT INTO accounts (id, name, mode, created_at_us) VALUES"
        f" ('acc_old', 'old', 'sandbox', {micros(T0)})",
        "INSERT INTO api_keys (key_hash, account_id, created_at_us) VALUES"
        f" ('{hashlib.sha256(secret.encode()).hexdigest()}', 'acc_old', {micros(T0)})",
    ]
    with monkeypatch.context() as patch:
        if database_url is None:
            patch.setattr(sqlite, "load_migrations", lambda _engine: earlier)
            sqlite.migrate(tmp_path / "cardkeep.db")
            with sqlite3.connect(tmp_path / "cardkeep.db") as db:
                for row in rows:
                    db.execute(row)
        else:
            patch.setattr(postgres, "load_migrations", lambda _engine: earlier)
            postgres.migrate(database_url)
            with psycopg.connect(database_url, autocommit=True) as pg:
                for row in rows:
                    pg.execute(row)
    with run_server(tmp_path, workers=2, database_url=database_url) as server:  # migrates
        workers = processes_of(server, "api", 2)
        api = _port(server.api_url)
        ask = lambda: _ask(api, workers, secret, "GET", "/sandbox/clock")  # noqa: E731
        assert {status for status, _ in _each_worker(ask, workers)} == {200}
        listing, _ = _run(server, "keys", "acc_old")
        found = KEY_LINE.fullmatch(listing.strip())
        assert found is not None, listing
        assert re.fullmatch(r"key_[0-9a-f]{32}", found[1])
        assert (found[2], found[3]) == ("2026-11-24T12:00:00.000000Z", "active")
        _run(server, "revoke-key", found[1])
        assert {status for status, _ in _each_worker(ask, workers)} == {401}
