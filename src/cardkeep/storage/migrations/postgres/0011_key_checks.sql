-- One check value per key kept outside the database that every process and instance on this
-- database must share (service/key_checks.py): HMAC-SHA256 of a fixed message under the key, which
-- tells whether two keys are the same without telling anything of either. The first process to
-- start writes it; a process started with another key refuses to start.
CREATE TABLE key_checks (
    name   TEXT PRIMARY KEY,
    digest TEXT NOT NULL
);
