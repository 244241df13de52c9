-- Envelope encryption of the vault (cde/vault.py). Data-encryption keys (DEKs): 32 random bytes
-- per account, stored only wrapped (AES-256-GCM) under a key-encryption key (KEK) of the keyring,
-- which is kept outside the database; `kek_id` names that KEK. `status` is current (seals the
-- account's new cards; one per account), previous (replaced, still opens its cards) or retired
-- (no card uses it). `vault_cards.key_id` names the DEK a card is sealed under (or, for a card
-- sealed by an earlier release, the legacy vault key's id until `cardkeep keys rotate --deks`).
CREATE TABLE vault_deks (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    kek_id        TEXT NOT NULL,
    wrapped       BLOB NOT NULL,
    status        TEXT NOT NULL,
    created_at_us INTEGER NOT NULL
);
CREATE UNIQUE INDEX vault_deks_current ON vault_deks (account_id) WHERE status = 'current';
CREATE INDEX vault_deks_kek ON vault_deks (kek_id, id);
CREATE INDEX vault_cards_key ON vault_cards (key_id);
CREATE INDEX vault_cards_account ON vault_cards (account_id, token);
