-- The web origins an account allows to frame the hosted card page (comma-separated, normalised).
ALTER TABLE accounts ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '';
