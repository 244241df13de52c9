-- The sandbox acquirer's ledger: the first answer to each charge attempt, by its idempotency key,
-- shared by every process on this database and kept across restarts. Never card data.
CREATE TABLE sandbox_ledger (
    idempotency_key        TEXT PRIMARY KEY,
    result                 TEXT NOT NULL,
    message                TEXT NOT NULL,
    auth_code              TEXT,
    network_transaction_id TEXT,
    created_at             TEXT NOT NULL
);
