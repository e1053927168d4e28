-- The reference ledger's transaction and operation tables (final columns after its migrations).
-- IF NOT EXISTS: the recorder may be pointed at a database where the ledger created them.

CREATE TABLE IF NOT EXISTS transaction (
    id                           UUID PRIMARY KEY,
    parent_transaction_id        UUID NULL REFERENCES transaction (id),
    description                  TEXT NOT NULL,
    status                       TEXT NOT NULL,
    status_description           TEXT NULL,
    amount                       NUMERIC,
    asset_code                   TEXT NOT NULL,
    chart_of_accounts_group_name TEXT NOT NULL,
    ledger_id                    UUID NOT NULL,
    organization_id              UUID NOT NULL,
    body                         JSONB NULL,
    route                        TEXT NULL,
    route_id                     UUID NULL,
    fees_skipped                 BOOLEAN NOT NULL DEFAULT false,
    tracer_skipped               BOOLEAN NOT NULL DEFAULT false,
    created_at                   TIMESTAMPTZ NOT NULL,
    updated_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at                   TIMESTAMPTZ NULL
);

CREATE INDEX IF NOT EXISTS idx_transaction_parent_transaction_id ON transaction (parent_transaction_id);
CREATE INDEX IF NOT EXISTS idx_transaction_organization_id_ledger_id ON transaction (organization_id, ledger_id);
CREATE INDEX IF NOT EXISTS idx_transaction_created_at ON transaction (created_at);

CREATE TABLE IF NOT EXISTS operation (
    id                      UUID PRIMARY KEY,
    transaction_id          UUID NOT NULL REFERENCES transaction (id),
    description             TEXT NOT NULL,
    type                    TEXT NOT NULL,
    asset_code              TEXT NOT NULL,
    amount                  NUMERIC,
    available_balance       NUMERIC,
    on_hold_balance         NUMERIC,
    available_balance_after NUMERIC,
    on_hold_balance_after   NUMERIC,
    balance_version_before  BIGINT NOT NULL DEFAULT 0,
    balance_version_after   BIGINT NOT NULL DEFAULT 0,
    status                  TEXT NOT NULL,
    status_description      TEXT NULL,
    account_id              UUID NOT NULL,
    account_alias           TEXT NOT NULL,
    balance_id              UUID NOT NULL,
    balance_key             TEXT NOT NULL DEFAULT 'default',
    chart_of_accounts       TEXT NOT NULL,
    organization_id         UUID NOT NULL,
    ledger_id               UUID NOT NULL,
    route                   TEXT NULL,
    route_id                UUID NULL,
    direction               VARCHAR(10) NULL,
    balance_affected        BOOLEAN NOT NULL DEFAULT true,
    snapshot                JSONB NOT NULL DEFAULT '{}',
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at              TIMESTAMPTZ NULL
);

CREATE INDEX IF NOT EXISTS idx_operation_transaction_id ON operation (transaction_id);
CREATE INDEX IF NOT EXISTS idx_operation_organization_id_ledger_id ON operation (organization_id, ledger_id);
CREATE INDEX IF NOT EXISTS idx_operation_created_at ON operation (created_at);
CREATE INDEX IF NOT EXISTS idx_operation_account_id ON operation (account_id);
