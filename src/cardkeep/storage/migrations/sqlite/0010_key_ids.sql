-- Every API key gets a public id, unique, that names it without its secret (`accounts keys`,
-- `accounts revoke-key`). New keys get `key_` and 22 base64url characters from the service; keys
-- made before this migration get `key_` and 32 lowercase hex characters (16 random bytes) here.
-- SQLite cannot add a NOT NULL column without a default, so the table is rebuilt (no table
-- refers to api_keys).
CREATE TABLE api_keys_with_ids (
    id            TEXT NOT NULL UNIQUE,
    key_hash      TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    created_at_us INTEGER NOT NULL,
    revoked_at_us INTEGER
);
INSERT INTO api_keys_with_ids (id, key_hash, account_id, created_at_us, revoked_at_us)
    SELECT 'key_' || lower(hex(randomblob(16))), key_hash, account_id, created_at_us, revoked_at_us
    FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_with_ids RENAME TO api_keys;
CREATE INDEX api_keys_account ON api_keys (account_id);
