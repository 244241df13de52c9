-- One timestamp encoding: every stored instant is integer microseconds since the epoch (UTC), as
-- on PostgreSQL, so the repositories' SQL is the same on both engines. Earlier rows kept ISO 8601
-- text in UTC (`…+00:00` or `…Z`, with or without a fraction): converted here.
ALTER TABLE accounts ADD COLUMN created_at_us INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET created_at_us =
    CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) * 1000000
    + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(created_at || '000000', 21, 6) AS INTEGER) ELSE 0 END;
ALTER TABLE accounts DROP COLUMN created_at;

ALTER TABLE api_keys ADD COLUMN created_at_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN revoked_at_us INTEGER;
UPDATE api_keys SET created_at_us =
    CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) * 1000000
    + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(created_at || '000000', 21, 6) AS INTEGER) ELSE 0 END;
UPDATE api_keys SET revoked_at_us =
    CAST(strftime('%s', substr(revoked_at, 1, 19)) AS INTEGER) * 1000000
    WHERE revoked_at IS NOT NULL;
ALTER TABLE api_keys DROP COLUMN created_at;
ALTER TABLE api_keys DROP COLUMN revoked_at;

ALTER TABLE vault_cards ADD COLUMN created_at_us INTEGER NOT NULL DEFAULT 0;
UPDATE vault_cards SET created_at_us =
    CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) * 1000000
    + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(created_at || '000000', 21, 6) AS INTEGER) ELSE 0 END;
ALTER TABLE vault_cards DROP COLUMN created_at;

DROP INDEX outbox_pending;
ALTER TABLE outbox ADD COLUMN created_at_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN delivered_at_us INTEGER;
UPDATE outbox SET created_at_us =
    CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) * 1000000
    + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(created_at || '000000', 21, 6) AS INTEGER) ELSE 0 END;
ALTER TABLE outbox DROP COLUMN created_at;
ALTER TABLE outbox DROP COLUMN delivered_at;
CREATE INDEX outbox_pending ON outbox (delivered_at_us, created_at_us);

ALTER TABLE sandbox_ledger ADD COLUMN created_at_us INTEGER NOT NULL DEFAULT 0;
UPDATE sandbox_ledger SET created_at_us =
    CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) * 1000000
    + CASE WHEN substr(created_at, 20, 1) = '.' THEN CAST(substr(created_at || '000000', 21, 6) AS INTEGER) ELSE 0 END;
ALTER TABLE sandbox_ledger DROP COLUMN created_at;

CREATE INDEX accounts_sweep_lease ON accounts (sweep_leased_until_us);
CREATE INDEX payment_intents_charging ON payment_intents (status, recovery_leased_until_us);
