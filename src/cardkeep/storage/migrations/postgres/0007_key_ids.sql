-- Every API key gets a public id, unique, that names it without its secret (`accounts keys`,
-- `accounts revoke-key`). New keys get `key_` and 22 base64url characters from the service; keys
-- made before this migration get `key_` and 32 lowercase hex characters (a random UUID's) here.
ALTER TABLE api_keys ADD COLUMN id TEXT;
UPDATE api_keys SET id = 'key_' || replace(gen_random_uuid()::text, '-', '');
ALTER TABLE api_keys ALTER COLUMN id SET NOT NULL;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_id UNIQUE (id);
