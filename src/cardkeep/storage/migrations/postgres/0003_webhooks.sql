-- Webhook subscriptions, their secrets (sealed under a key kept outside the database) and one
-- delivery row per (event, matching subscription), written in the transaction of the event.
-- Due times are on the account's clock; leases are real time.
CREATE TABLE webhook_subscriptions (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    url           TEXT NOT NULL,
    description   TEXT,
    events        TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    UNIQUE (account_id, url)
);

CREATE TABLE webhook_secrets (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    sealed          BYTEA NOT NULL,
    is_active       INTEGER NOT NULL,
    created_at_us   BIGINT NOT NULL
);
CREATE INDEX webhook_secrets_subscription ON webhook_secrets (subscription_id);

CREATE TABLE webhook_deliveries (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL,
    subscription_id      TEXT NOT NULL,
    event_id             TEXT NOT NULL,
    event                TEXT NOT NULL,
    status               TEXT NOT NULL,
    attempts             INTEGER NOT NULL,
    next_attempt_at_us   BIGINT,
    leased_until_us      BIGINT,
    last_attempt_at_us   BIGINT,
    last_response_status INTEGER,
    last_error           TEXT,
    created_at_us        BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at_us);
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (account_id, id);
