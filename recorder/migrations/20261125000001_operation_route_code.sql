-- Columns the ledger's operation table gained with operation routes.
ALTER TABLE operation ADD COLUMN IF NOT EXISTS route_code TEXT NULL;
ALTER TABLE operation ADD COLUMN IF NOT EXISTS route_description TEXT NULL;
