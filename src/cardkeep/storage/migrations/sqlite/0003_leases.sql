-- Leases for background work that every worker runs: an account is swept, and a charge whose
-- outcome is unknown is re-sent, by one worker at a time. A lease is a committed time (real time,
-- microseconds since the epoch) until which the item is taken; an expired lease is free again.
ALTER TABLE accounts ADD COLUMN sweep_leased_until_us INTEGER;
ALTER TABLE payment_intents ADD COLUMN recovery_leased_until_us INTEGER;
