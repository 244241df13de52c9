-- The sandbox acquirer's ledger records what each entry moved and what it references: the amount
-- (minor units), the kind ('charge', 'refund' or 'reversal') and, for a refund or reversal, the
-- key of the captured charge it returns money from. Rows written before this have no amount;
-- every one of them is a charge.
ALTER TABLE sandbox_ledger ADD COLUMN amount BIGINT;
ALTER TABLE sandbox_ledger ADD COLUMN capture_key TEXT;
ALTER TABLE sandbox_ledger ADD COLUMN kind TEXT;
UPDATE sandbox_ledger SET kind = 'charge' WHERE kind IS NULL;
CREATE INDEX sandbox_ledger_capture ON sandbox_ledger (capture_key);
