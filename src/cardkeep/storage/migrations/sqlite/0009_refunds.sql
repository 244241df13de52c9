-- Refunds and reversals of captured payment intents (CONTRACT §5.5-5.6): one row each, written
-- conditionally on its status; the document holds the record, the columns what is searched.
-- request: a token of the idempotency key that claimed it (a retry finds it again).
CREATE TABLE refunds (
    id                       TEXT PRIMARY KEY,
    account_id               TEXT NOT NULL REFERENCES accounts (id),
    payment_intent_id        TEXT NOT NULL REFERENCES payment_intents (id),
    kind                     TEXT NOT NULL,
    status                   TEXT NOT NULL,
    request                  TEXT,
    created_at_us            INTEGER NOT NULL,
    recovery_leased_until_us INTEGER,
    doc                      BLOB NOT NULL
);
CREATE INDEX refunds_by_payment_intent ON refunds (payment_intent_id, status);
CREATE INDEX refunds_pending ON refunds (status, recovery_leased_until_us);
