-- Card attempts counted by the card-testing limits (service/card_limits.py): per account, and per
-- setup intent when made through a client session secret; the card as its keyed fingerprint
-- (HMAC-SHA256 under a key kept outside the database), never its number. `outcome` is pending
-- while the acquirer is asked, then approved, declined or expired. Times are real time, in
-- microseconds; the sweeper deletes rows older than the window.
CREATE TABLE card_attempts (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    setup_intent_id TEXT,
    fingerprint     TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    at_us           BIGINT NOT NULL
);
CREATE INDEX card_attempts_account ON card_attempts (account_id, at_us);
CREATE INDEX card_attempts_setup_intent ON card_attempts (setup_intent_id, at_us)
    WHERE setup_intent_id IS NOT NULL;
CREATE INDEX card_attempts_at ON card_attempts (at_us);
