-- The schema SQLite reaches with its migrations 1 to 4, for PostgreSQL: accounts, keys (hashed),
-- setup and payment intents (versioned JSON documents), sealed cards (ciphertext only), the
-- outbox, the sandbox acquirer's ledger, and the leases of background work. Every instant is
-- integer microseconds since the epoch (UTC).
CREATE TABLE accounts (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    mode                  TEXT NOT NULL CHECK (mode IN ('sandbox', 'prod')),
    created_at_us         BIGINT NOT NULL,
    clock_offset_us       BIGINT NOT NULL DEFAULT 0 CHECK (clock_offset_us >= 0),
    sweep_leased_until_us BIGINT
);
CREATE INDEX accounts_sweep_lease ON accounts (sweep_leased_until_us);

CREATE TABLE api_keys (
    key_hash      TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    created_at_us BIGINT NOT NULL,
    revoked_at_us BIGINT
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE setup_intents (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    status          TEXT NOT NULL,
    expire_at_us    BIGINT NOT NULL,
    card_ends_at_us BIGINT,
    doc             BYTEA NOT NULL
);
CREATE INDEX setup_intents_due ON setup_intents (account_id, status, expire_at_us);

CREATE TABLE payment_intents (
    id                       TEXT PRIMARY KEY,
    account_id               TEXT NOT NULL REFERENCES accounts (id),
    status                   TEXT NOT NULL,
    setup_intent_id          TEXT REFERENCES setup_intents (id),
    expire_at_us             BIGINT NOT NULL,
    doc                      BYTEA NOT NULL,
    recovery_leased_until_us BIGINT
);
CREATE INDEX payment_intents_due ON payment_intents (account_id, status, expire_at_us);
CREATE INDEX payment_intents_charging ON payment_intents (status, recovery_leased_until_us);

CREATE TABLE vault_cards (
    token         TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    key_id        TEXT NOT NULL,
    nonce         BYTEA NOT NULL,
    ciphertext    BYTEA NOT NULL,
    created_at_us BIGINT NOT NULL
);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    created_at_us   BIGINT NOT NULL,
    payload         BYTEA NOT NULL,
    delivered_at_us BIGINT
);
CREATE INDEX outbox_pending ON outbox (delivered_at_us, created_at_us);

CREATE TABLE sandbox_ledger (
    idempotency_key        TEXT PRIMARY KEY,
    result                 TEXT NOT NULL,
    message                TEXT NOT NULL,
    auth_code              TEXT,
    network_transaction_id TEXT,
    created_at_us          BIGINT NOT NULL
);
