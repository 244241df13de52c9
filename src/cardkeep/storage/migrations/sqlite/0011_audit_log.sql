-- The audit log: security events (API keys created and revoked, authentication failures counted
-- per key and minute, each use of a card number for an authorization or a charge), one row each,
-- never a card number. Append-only: the triggers below refuse every UPDATE and DELETE.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    at_us      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    account_id TEXT,
    outcome    TEXT NOT NULL,
    count      INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_account ON audit_log (account_id, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
