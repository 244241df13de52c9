"""Card-testing defence across processes: with ``serve --workers 2``, on SQLite and PostgreSQL,
concurrent failed card attempts of one account reach the acquirer no more often than the limit
allows, because the count is in the database. The card fingerprints stay in the database (never in
an answer or the log), and no card number is written anywhere in clear."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.e2e.harness import (
    APPROVED_CARD,
    DECLINED_CARD,
    SI_FIELDS,
    VERSION,
    card,
    http_client,
    run_server,
)

LIMIT = 5
ATTEMPTS = 24
WINDOW = 600


def test_the_account_limit_holds_across_workers(tmp_path: Path, database_url: str | None) -> None:
    env = {"CARDKEEP_LIMIT_FAILED_PER_ACCOUNT": str(LIMIT)}
    with run_server(tmp_path, workers=2, env=env, database_url=database_url) as server:
        key = server.create_account()
        headers = {"Authorization": f"Basic {key}", "version": VERSION}
        body = {**SI_FIELDS, "cardDetails": card(DECLINED_CARD)}

        def attempt(_: int) -> httpx.Response:
            with http_client(server.pci_url, headers) as pci:  # a connection of its own
                return pci.post("/setup-intents", json=body)

        with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
            answers = list(pool.map(attempt, range(ATTEMPTS)))
        with http_client(server.pci_url, headers) as pci:
            approved = {**SI_FIELDS, "cardDetails": card(APPROVED_CARD)}
            answers.append(pci.post("/setup-intents", json=approved))
            answers.append(pci.get("/health"))

        statuses = sorted(r.status_code for r in answers[:-1])
        assert statuses == [200] * LIMIT + [429] * (ATTEMPTS + 1 - LIMIT), statuses
        for r in answers[:-1]:
            if r.status_code == 200:
                assert r.json()["setupEvents"][-1]["eventType"] == "Declined"
            else:
                assert r.json()["code"] == "rate_limited"
                assert 0 < int(r.headers["Retry-After"]) <= WINDOW
        # the table says the same: the limit's worth of attempts, all settled, none pending
        rows = server.sql("SELECT outcome, fingerprint, setup_intent_id FROM card_attempts")
        assert sorted(row[0] for row in rows) == ["declined"] * LIMIT
        assert {row[2] for row in rows} == {None}
        fingerprints = {row[1] for row in rows}
        assert len(fingerprints) == 1

        seen = "\n".join(f"{r.status_code} {r.headers} {r.text}" for r in answers)
        log = server.log_path.read_text(errors="replace")
        for fingerprint in fingerprints:
            assert len(fingerprint) == 64
            assert fingerprint not in seen
            assert fingerprint not in log
        for path in server.stored_files():
            raw = path.read_bytes()
            for pan in (DECLINED_CARD, APPROVED_CARD):
                assert pan.encode() not in raw, path
