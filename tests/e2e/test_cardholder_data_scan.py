"""Acceptance (cardholder data environment): a leak scan after the full flows, on both engines.

One server per engine, with a keyring of two KEKs, a webhook receiver subscribed before anything
else. Every card sent carries its own distinctive CVV (4 digits for AMEX) and the PANs are
distinct: the sandbox's test cards, approved PANs generated for this run, and PANs whose check
digit is wrong. The flows: approval, decline, a card expired at entry, invalid PANs, charges (a
success and a decline by amount), a refund, the hosted page's card endpoint, and a rotation of
both the KEK and the DEKs while cards are on file, then a charge of a card stored before it.

Then the scan, every part of which must find nothing:

- PANs (every text form) in every response, webhook body and header, log line and CLI output;
  PANs (every byte form) in the raw bytes of every stored file: the data directory and the
  database's files (PostgreSQL: after ``CHECKPOINT``, with the WAL written meanwhile), and in
  every value of every column of every table, read through SQL;
- CVVs as exact values in every column through SQL: a standalone token in text (and in byte
  values that are UTF-8 text, e.g. JSON documents), the ASCII and UTF-16 forms in binary values;
- CVVs in context (``"cv2": "739"``, a quoted ``"739"``) in responses, webhooks, logs and files.

A token here is bounded by anything but a letter or digit, not only by a non-digit: random ids
and hex digests would otherwise produce false hits by the dozen. The CVVs are chosen to collide
with nothing the flows store (no amount, year or last four digits); the scan runs once before
any card is sent (a baseline that must be clean), and also looks for CVVs never sent (controls
that must be clean too, or the scanner matches noise). Positive controls keep it from passing
vacuously: the masked card is in the responses and the stored documents, a marker reference is
found in the raw bytes and by the SQL scan, the webhook bodies name the intents created, and the
log shows the requests.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cardkeep.domain.card import luhn_ok
from tests.e2e.harness import (
    APPROVED_CARD,
    DECLINED_CARD,
    SI_FIELDS,
    TEST_PANS,
    VERSION,
    Merchant,
    Server,
    card,
    run_server,
)
from tests.e2e.receiver import Received, Receiver, receiver
from tests.e2e.test_key_rotation import cli, keyring
from tests.e2e.test_no_card_data_leaks import (
    Recorder,
    _byte_forms,
    _grouped,
    _text_forms,
    _wrong_check_digit,
)
from tests.e2e.test_webhooks import ALL_EVENTS

pytestmark = pytest.mark.slow

# One per card sent, in order; none is an amount, a year or a count the flows produce.
CVVS = (
    "739", "846", "958", "374", "683", "497", "864", "936", "578", "649",
    "785", "396", "467", "839", "574", "948", "376", "695", "758", "943",
    "486", "637", "854", "569", "794", "387", "659", "978", "436", "875",
)  # fmt: skip
AMEX_CVVS = ("8462", "7395")
# Never sent: the scan must not find them either.
CONTROL_CVVS = ("748", "963", "593", "6847")
AMEX = "378282246310005"
KNOWN_TOKEN = "582"  # stored on purpose (in a reference): the SQL scan must find it
AMOUNTS = (1000, 1051, 300)


class Cvvs:
    """Hands out each CVV once; remembers which card it went with."""

    def __init__(self) -> None:
        self._three = list(CVVS)
        self._four = list(AMEX_CVVS)
        self.sent: dict[str, str] = {}  # CVV -> PAN (as sent)

    def next(self, pan: str) -> str:
        pool = self._four if pan.startswith(("34", "37")) else self._three
        cvv = pool.pop(0)
        self.sent[cvv] = pan
        return cvv


def _luhn_complete(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def _generated_pans(count: int) -> list[str]:
    """Luhn-valid Visa and Mastercard numbers no test card has, new every run; their last four
    digits are no CVV of this test (last4 is stored and shown)."""
    avoid = {*CVVS, *AMEX_CVVS, *CONTROL_CVVS, KNOWN_TOKEN}
    found: list[str] = []
    while len(found) < count:
        prefix = "4" if len(found) % 2 == 0 else "5" + str(1 + secrets.randbelow(5))
        body = prefix + "".join(str(secrets.randbelow(10)) for _ in range(15 - len(prefix)))
        pan = _luhn_complete(body)
        if pan in TEST_PANS or pan in found or any(c in pan[-4:] for c in avoid):
            continue
        found.append(pan)
    return found


def _alternatives(values: Iterable[str]) -> str:
    return "|".join(sorted(values, key=len, reverse=True))


def _token_re(values: Iterable[str]) -> re.Pattern[str]:
    return re.compile(rf"(?<![0-9A-Za-z])(?:{_alternatives(values)})(?![0-9A-Za-z])")


def _in_context_re(values: Iterable[str]) -> re.Pattern[str]:
    alt = _alternatives(values)
    return re.compile(rf"(?i)c(?:v|vv|vc)2?[\"']?\s*[:=]\s*[\"']?(?:{alt})(?![0-9])|\"(?:{alt})\"")


# Printable ASCII that is neither a letter nor a digit: what may surround a token in binary.
_PUNCT = rb"\x20-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e"


def _binary_token_re(values: Iterable[str]) -> re.Pattern[bytes]:
    alt = _alternatives(values).encode()
    return re.compile(rb"(?<![^" + _PUNCT + rb"])(?:" + alt + rb")(?![^" + _PUNCT + rb"])")


# --- the stored values, through SQL -----------------------------------------------------------


def _columns(server: Server) -> dict[str, list[str]]:
    """Every table of the server's database and its columns."""
    tables: dict[str, list[str]] = {}
    if server.engine == "sqlite":
        names = server.sql("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        for (name,) in names:
            tables[name] = [row[1] for row in server.sql(f'PRAGMA table_info("{name}")')]
        return tables
    rows = server.sql(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t"
        " ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " ORDER BY c.table_name, c.ordinal_position"
    )
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return tables


def _normalised(value: Any) -> str | bytes | None:
    match value:
        case None:
            return None
        case bytes():
            return value
        case memoryview() | bytearray():
            return bytes(value)
        case str():
            return value
        case bool() | int() | float() | Decimal():
            return str(value)
        case datetime():
            return value.isoformat()
        case dict() | list():
            return json.dumps(value)
        case _:
            return str(value)


def _stored_values(server: Server) -> list[tuple[str, str | bytes]]:
    """("table.column", value) for every non-null value of every column of every table."""
    values: list[tuple[str, str | bytes]] = []
    for table, columns in _columns(server).items():
        listed = ", ".join(f'"{c}"' for c in columns)
        for row in server.sql(f'SELECT {listed} FROM "{table}"'):
            for column, raw in zip(columns, row, strict=True):
                value = _normalised(raw)
                if value is not None:
                    values.append((f"{table}.{column}", value))
    return values


def _as_text(value: str | bytes) -> str | None:
    """The value as text: a string, or bytes that are UTF-8 (a JSON document); None for binary."""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _cvv_hits_in_columns(values: list[tuple[str, str | bytes]], cvvs: Iterable[str]) -> list[str]:
    cvvs = list(cvvs)
    token, binary = _token_re(cvvs), _binary_token_re(cvvs)
    hits = []
    for where, value in values:
        text = _as_text(value)
        if text is not None:
            hits += [f"{where}: {m.group(0)!r} in {text[:200]!r}" for m in token.finditer(text)]
            continue
        assert isinstance(value, bytes)
        hits += [f"{where}: {m.group(0)!r} (ASCII)" for m in binary.finditer(value)]
        for cvv in cvvs:
            for encoding in ("utf-16-le", "utf-16-be", "utf-32-le"):
                if cvv.encode(encoding) in value:
                    hits.append(f"{where}: {cvv!r} ({encoding})")
            if value in (cvv.encode(), cvv.encode("utf-16-le"), cvv.encode("utf-16-be")):
                hits.append(f"{where}: the whole value is {cvv!r}")
    return hits


def _pan_hits_in_columns(values: list[tuple[str, str | bytes]], pans: Iterable[str]) -> list[str]:
    forms = {pan: list(dict.fromkeys(_byte_forms(pan))) for pan in pans}
    hits = []
    for where, value in values:
        data = value.encode("utf-8") if isinstance(value, str) else value
        for pan, pan_forms in forms.items():
            hits += [f"{where}: {form!r} (PAN {pan})" for form in pan_forms if form in data]
    return hits


# --- the other places ---------------------------------------------------------------------------


def _pan_hits_in_text(where: str, text: str, pans: Iterable[str]) -> list[str]:
    return [f"{where}: {form}" for pan in pans for form in _text_forms(pan) if form in text]


def _cvv_hits_in_text(where: str, text: str, cvvs: Iterable[str]) -> list[str]:
    return [f"{where}: {m.group(0)!r}" for m in _in_context_re(cvvs).finditer(text)]


def _log_hits(server: Server, pans: Iterable[str], cvvs: Iterable[str]) -> list[str]:
    pans, cvvs = list(pans), list(cvvs)
    hits = []
    for n, line in enumerate(server.log_text().splitlines(), start=1):
        hits += _pan_hits_in_text(f"log line {n}", line, pans)
        hits += _cvv_hits_in_text(f"log line {n}", line, cvvs)
    return hits


def _quoted_re(cvvs: Iterable[str], encoding: str) -> re.Pattern[bytes]:
    """A quoted CVV in ``encoding``: one pattern, not a search per CVV (the files are large)."""
    alt = b"|".join(re.escape(cvv.encode(encoding)) for cvv in cvvs)
    quote = re.escape('"'.encode(encoding))
    return re.compile(quote + b"(?:" + alt + b")" + quote)


def _file_hits(server: Server, pans: Iterable[str], cvvs: Iterable[str]) -> list[str]:
    pans, cvvs = list(pans), list(cvvs)
    context = re.compile(_in_context_re(cvvs).pattern.encode())
    quoted = [
        _quoted_re(cvvs, encoding) for encoding in ("utf-16-le", "utf-16-be")
    ]  # ASCII: context
    pan_forms = list(dict.fromkeys(form for pan in pans for form in _byte_forms(pan)))
    hits = []
    for path in server.stored_files():
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # a WAL segment PostgreSQL recycled meanwhile
        hits += [f"{path.name}: {form!r}" for form in pan_forms if form in data]
        hits += [f"{path.name}: {m.group(0)!r}" for m in context.finditer(data)]
        hits += [f"{path.name}: {m.group(0)!r}" for q in quoted for m in q.finditer(data)]
    return hits


# --- the flows ----------------------------------------------------------------------------------


@dataclass
class Flows:
    merchant: Merchant
    cvvs: Cvvs
    extra: list[str]
    marker: str
    pans_sent: set[str] = field(default_factory=set)
    setup_intents: set[str] = field(default_factory=set)
    payment_intents: set[str] = field(default_factory=set)
    stored_before_rotation: list[str] = field(default_factory=list)
    masked_seen: list[str] = field(default_factory=list)
    refunded: str = ""

    def enter(self, pan: str, expiry: str = "12/39", **fields: Any) -> dict[str, Any]:
        """A card through the PCI listener's setup intent creation; its answer (200)."""
        self.pans_sent.add(pan)
        r = self.merchant.pci_create(card(pan, expiry, self.cvvs.next(pan)), **fields)
        assert r.status_code == 200, r.text
        si: dict[str, Any] = r.json()
        self.setup_intents.add(si["id"])
        if si["status"] == "Authorized":
            digits = re.sub(r"[ -]", "", pan)
            masked = digits[:6] + "******" + digits[-4:]
            assert si["paymentDetails"]["card"]["cardNumber"] == masked
            self.masked_seen.append(masked)
        return si

    def charge(self, si_id: str, amount: int) -> tuple[str, str]:
        """A payment intent of ``amount`` on the card, charged: its id and the charge's status."""
        pi = self.merchant.create_pi(si_id, amount)
        assert pi.status_code == 200, pi.text
        pi_id = str(pi.json()["id"])
        self.payment_intents.add(pi_id)
        r = self.merchant.charge(pi_id)
        assert r.status_code == 200, r.text
        return pi_id, str(r.json()["status"])

    def sandbox_cards(self) -> None:
        """Every sandbox test card: approved ones charged (declined by amount, then a success),
        declined ones closed."""
        for pan in TEST_PANS:
            si = self.enter(pan, reference=f"scan-{pan[-4:]}")
            if si["status"] != "Authorized":
                assert si["status"] == "Created", si
                assert [e["eventType"] for e in si["setupEvents"]] == ["Declined"]
                assert self.merchant.api.delete(f"/setup-intents/{si['id']}").status_code == 200
                continue
            assert self.charge(si["id"], 1051)[1] == "Declined"  # sandbox: amount ..51
            pi_id, status = self.charge(si["id"], 1000)
            assert status == "Successful"
            assert self.merchant.get_si(si["id"]).json()["status"] == "Completed"
            self.refunded = self.refunded or pi_id

    def refund(self) -> None:
        pi = self.refunded
        r = self.merchant.api.post(
            f"/payment-intents/{pi}/refunds",
            json={"amount": 300, "refundReason": "Scan"},
            headers={"idempotencyKey": f"scan-refund-{pi}"},
        )
        assert r.status_code == 200, r.text
        after = self.merchant.api.get(f"/payment-intents/{pi}").json()
        assert after["refundedAmount"] == 300, after

    def expired_and_invalid(self) -> None:
        expired = self.enter(self.extra[0], "01/20")
        assert expired["status"] == "CardExpired", expired
        grouped = self.enter(_grouped(self.extra[1], " "))
        assert grouped["status"] == "Authorized", grouped
        self.pans_sent.add(self.extra[1])
        invalid = [
            *(_wrong_check_digit(p) for p in TEST_PANS),
            *(_wrong_check_digit(p) for p in self.extra),
            APPROVED_CARD + "0",
            AMEX,
        ]
        for pan in invalid:
            self.pans_sent.add(pan)
            body = {**SI_FIELDS, "cardDetails": card(pan, cv2=self.cvvs.next(pan))}
            r = self.merchant.pci.post("/setup-intents", json=body)
            assert r.status_code == 400, r.text
            assert r.json()["code"] == "validation_error", r.text

    def hosted_page(self, approved: str) -> None:
        """A decline then an approval through the page's card endpoint (client session secret)."""
        r = self.merchant.create_si(reference="scan-page")
        assert r.status_code == 200, r.text
        si_id, secret = r.json()["id"], r.json()["clientSessionSecret"]
        self.setup_intents.add(si_id)
        headers = {"Authorization": f"Basic {secret}", "version": VERSION}
        for pan, status in ((DECLINED_CARD, "Created"), (approved, "Authorized")):
            self.pans_sent.add(pan)
            body = {"cardDetails": card(pan, cv2=self.cvvs.next(pan)), "mitConsentGiven": True}
            r = self.merchant.pci.post(
                f"/setup-intents/public/{si_id}/card", json=body, headers=headers
            )
            assert (r.status_code, r.json()["status"]) == (200, status), r.text
        self.stored_before_rotation.append(si_id)

    def cards_kept_for_the_rotation(self, pans: list[str]) -> None:
        for pan in pans:
            si = self.enter(pan, reference=self.marker)
            assert si["status"] == "Authorized", si
            self.stored_before_rotation.append(si["id"])


def _vault_keys(server: Server) -> tuple[set[str], set[str]]:
    """(KEK ids wrapping a DEK, DEK ids sealing a card)."""
    keks = {str(row[0]) for row in server.sql("SELECT kek_id FROM vault_deks")}
    deks = {str(row[0]) for row in server.sql("SELECT key_id FROM vault_cards")}
    return keks, deks


def _rotate(server: Server, env: dict[str, str]) -> list[str]:
    """Both rotations through the CLI; their output (scanned like a log)."""
    keks, deks = _vault_keys(server)
    assert keks == {"kek-1"}
    kek = cli(server, "keys", "rotate", "--kek", "kek-2", env=env)
    assert kek.returncode == 0, kek.stderr
    assert "rewrapped" in kek.stdout
    dek = cli(server, "keys", "rotate", "--deks", env=env)
    assert dek.returncode == 0, dek.stderr
    assert "cards re-sealed" in dek.stdout
    keks_after, deks_after = _vault_keys(server)
    assert keks_after == {"kek-2"}
    assert deks_after.isdisjoint(deks), "the cards were not re-sealed under new DEKs"
    return [kek.stdout, kek.stderr, dek.stdout, dek.stderr]


def _webhook_ids(posts: list[Received]) -> set[str]:
    ids = set()
    for post in posts:
        data = json.loads(post.body)["data"]
        ids.update(str(data[k]) for k in ("setupIntentId", "paymentIntentId") if k in data)
    return ids


def _deliveries_settled(merchant: Merchant, hook: Receiver, expected: set[str]) -> None:
    """Wait (generously) until every intent was announced and no delivery is pending."""
    hook.wait_for(lambda seen: expected <= _webhook_ids(seen), timeout=60)
    deadline = time.monotonic() + 60
    while True:
        pending = merchant.api.get("/webhooks/deliveries", params={"status": "pending"})
        assert pending.status_code == 200, pending.text
        if not pending.json()["data"]:
            return
        assert time.monotonic() < deadline, pending.text
        time.sleep(0.1)


def _wait_for_log(server: Server, needle: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        text = server.log_text()
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def _scan_everything(
    server: Server,
    pans: Iterable[str],
    cvvs: Iterable[str],
    texts: list[tuple[str, str]],
) -> list[str]:
    pans, cvvs = list(pans), list(cvvs)
    values = _stored_values(server)
    hits = _cvv_hits_in_columns(values, cvvs) + _pan_hits_in_columns(values, pans)
    for where, text in texts:
        hits += _pan_hits_in_text(where, text, pans) + _cvv_hits_in_text(where, text, cvvs)
    return hits + _log_hits(server, pans, cvvs) + _file_hits(server, pans, cvvs)


def test_full_flows_leave_no_pan_or_cvv_anywhere(tmp_path: Path, database_url: str | None) -> None:
    path, kek1, kek2 = keyring(tmp_path)
    env = {"CARDKEEP_KEYRING": str(path)}
    extra = _generated_pans(6)
    all_cvvs = [*CVVS, *AMEX_CVVS]
    assert len({*all_cvvs, *CONTROL_CVVS, KNOWN_TOKEN}) == len(all_cvvs) + len(CONTROL_CVVS) + 1
    with (
        receiver() as hook,
        run_server(tmp_path / "data", env=env, database_url=database_url) as server,
    ):
        merchant = Merchant(server, server.create_account("scan"))
        recorder = Recorder()
        merchant.api.event_hooks["response"].append(recorder)
        merchant.pci.event_hooks["response"].append(recorder)
        r = merchant.api.post("/webhooks", json={"events": ALL_EVENTS, "url": hook.url})
        assert r.status_code == 200, r.text

        # Baseline: before any card, nothing anywhere looks like one of the CVVs.
        baseline = _scan_everything(server, extra, [*all_cvvs, *CONTROL_CVVS, KNOWN_TOKEN], [])
        assert baseline == [], "choose other CVVs: the baseline holds\n" + "\n".join(baseline)

        marker = f"scan-{secrets.token_hex(6)} {KNOWN_TOKEN}"
        flows = Flows(merchant, Cvvs(), extra, marker)
        flows.sandbox_cards()
        flows.refund()
        flows.expired_and_invalid()
        flows.hosted_page(extra[2])
        flows.cards_kept_for_the_rotation(extra[3:])
        cli_output = _rotate(server, env)
        for si_id in flows.stored_before_rotation:
            assert flows.charge(si_id, 1000)[1] == "Successful"
        assert len(flows.cvvs.sent) >= 25  # each card its own CVV

        expected = flows.setup_intents | flows.payment_intents
        _deliveries_settled(merchant, hook, expected)
        last = merchant.get_si(flows.stored_before_rotation[-1])
        log = _wait_for_log(server, last.headers["traceparent"])
        merchant.close()

        pans = sorted(flows.pans_sent | set(extra))
        texts = list(recorder.seen)
        for post in hook.posts:
            headers = "\n".join(f"{k}: {v}" for k, v in post.headers.items())
            texts.append((f"webhook {post.path}", headers + "\n\n" + post.body.decode("utf-8")))
        texts += [(f"CLI output {n}", text) for n, text in enumerate(cli_output)]

        # Positive controls: the scan looks where the data is.
        assert len(recorder.seen) > 50
        responses = "\n".join(text for _, text in recorder.seen)
        assert all(masked in responses for masked in flows.masked_seen)
        webhooks = "\n".join(text for where, text in texts if where.startswith("webhook"))
        assert all(i in webhooks for i in expected), "the webhooks do not name every intent"
        assert '"setupIntentStatus":"Authorized"' in webhooks.replace(" ", "")
        assert last.headers["traceparent"] in log, "the log does not show the requests"
        assert log.count(flows.stored_before_rotation[-1]) >= 1
        values = _stored_values(server)
        found = _cvv_hits_in_columns(values, [KNOWN_TOKEN])
        assert any(hit.startswith("setup_intents.doc") for hit in found), found
        stored_text = "\n".join(t for _, v in values if (t := _as_text(v)) is not None)
        assert all(masked in stored_text for masked in flows.masked_seen), "no masked cards"
        raw = server.stored_bytes()
        assert marker.encode() in raw, "the stored files do not show the writes"
        assert kek1 not in raw
        assert kek2 not in raw

        # The scan: no PAN, no CVV (those sent, those left over, the controls), anywhere.
        hits = _scan_everything(server, pans, [*all_cvvs, *CONTROL_CVVS], texts)
        assert hits == [], "card data found:\n" + "\n".join(hits)
