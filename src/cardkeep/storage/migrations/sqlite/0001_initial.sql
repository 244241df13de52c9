-- Accounts, keys (hashed), setup and payment intents, sealed cards (ciphertext only) and the outbox.
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('sandbox', 'prod')),
    created_at      TEXT NOT NULL,
    clock_offset_us INTEGER NOT NULL DEFAULT 0 CHECK (clock_offset_us >= 0)
);

CREATE TABLE api_keys (
    key_hash   TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE setup_intents (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    status          TEXT NOT NULL,
    expire_at_us    INTEGER NOT NULL,
    card_ends_at_us INTEGER,
    doc             BLOB NOT NULL
);
CREATE INDEX setup_intents_due ON setup_intents (account_id, status, expire_at_us);

CREATE TABLE payment_intents (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    status          TEXT NOT NULL,
    setup_intent_id TEXT REFERENCES setup_intents (id),
    expire_at_us    INTEGER NOT NULL,
    doc             BLOB NOT NULL
);
CREATE INDEX payment_intents_due ON payment_intents (account_id, status, expire_at_us);
CREATE INDEX payment_intents_status ON payment_intents (status);

CREATE TABLE vault_cards (
    token      TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    key_id     TEXT NOT NULL,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE outbox (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    event        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    payload      BLOB NOT NULL,
    delivered_at TEXT
);
CREATE INDEX outbox_pending ON outbox (delivered_at, created_at);
