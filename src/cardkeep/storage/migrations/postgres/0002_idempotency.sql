-- Idempotency-Key records (CONTRACT §6): per scope (an account) and key, the request's keyed
-- fingerprint, a lease (real time) while the first request runs, then its final status and body
-- (encrypted at rest). Never card data, never a usable secret in clear.
CREATE TABLE idempotency_keys (
    scope           TEXT NOT NULL,
    key             TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    state           TEXT NOT NULL,
    leased_until_us BIGINT,
    status          INTEGER,
    media_type      TEXT,
    body            BYTEA,
    created_at_us   BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_us);
