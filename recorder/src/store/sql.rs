//! SQL shared by the bulk and the one-by-one writers, so that both follow one rule.
//!
//! Macros rather than constants: `concat!` assembles each statement at compile time.

/// The `transaction` columns the recorder writes.
macro_rules! transaction_columns {
    () => {
        "id, parent_transaction_id, description, status, status_description, amount, \
         asset_code, chart_of_accounts_group_name, ledger_id, organization_id, body, route, \
         route_id, fees_skipped, tracer_skipped, created_at, updated_at, deleted_at"
    };
}

/// The `operation` columns the recorder writes.
macro_rules! operation_columns {
    () => {
        "id, transaction_id, description, type, asset_code, amount, available_balance, \
         on_hold_balance, available_balance_after, on_hold_balance_after, \
         balance_version_before, balance_version_after, status, status_description, account_id, \
         account_alias, balance_id, balance_key, chart_of_accounts, organization_id, ledger_id, \
         route, route_id, route_code, route_description, direction, balance_affected, snapshot, \
         created_at, updated_at, deleted_at"
    };
}

/// Ends an `INSERT INTO transaction AS s`: a stored PENDING transaction with the same content
/// moves to the proposed final status; anything else stored stays as it is. Returns each row
/// written and whether it was inserted (`xmax = 0`) rather than updated.
macro_rules! upsert_transaction {
    () => {
        "ON CONFLICT (id) DO UPDATE
            SET status = EXCLUDED.status, status_description = EXCLUDED.status_description,
                updated_at = EXCLUDED.updated_at
            WHERE s.status = 'PENDING' AND EXCLUDED.status IN ('APPROVED', 'CANCELED')
              AND (s.amount, s.asset_code, s.ledger_id, s.organization_id,
                   s.parent_transaction_id)
                  IS NOT DISTINCT FROM (EXCLUDED.amount, EXCLUDED.asset_code,
                   EXCLUDED.ledger_id, EXCLUDED.organization_id, EXCLUDED.parent_transaction_id)
        RETURNING s.id, s.xmax = 0 AS inserted"
    };
}

/// True when the stored row `s` and the proposed row `i` (left alone by the upsert) are not
/// the same transaction: other content, or a status that is neither the stored one nor a
/// stale PENDING.
macro_rules! conflicting {
    () => {
        "((s.amount, s.asset_code, s.ledger_id, s.organization_id, s.parent_transaction_id)
            IS DISTINCT FROM (i.amount::numeric, i.asset_code, i.ledger_id, i.organization_id,
            i.parent_transaction_id)
          OR (i.status <> s.status AND i.status <> 'PENDING'))"
    };
}

/// The values written for operation columns a message may leave out (the columns' defaults:
/// explicit NULLs would bypass them), from a row source whose columns are named as in
/// `operation_columns!`.
macro_rules! operation_values {
    () => {
        "id, transaction_id, description, type, asset_code, amount::numeric,
         available_balance::numeric, on_hold_balance::numeric, available_balance_after::numeric,
         on_hold_balance_after::numeric, COALESCE(balance_version_before, 0),
         COALESCE(balance_version_after, 0), status, status_description, account_id,
         account_alias, balance_id, COALESCE(NULLIF(balance_key, ''), 'default'),
         chart_of_accounts, organization_id, ledger_id, route, route_id, route_code,
         route_description, direction, COALESCE(balance_affected, true),
         COALESCE(snapshot::jsonb, '{}'), created_at, COALESCE(updated_at, now()), deleted_at"
    };
}

/// The same for transaction columns.
macro_rules! transaction_values {
    () => {
        "id, parent_transaction_id, description, status, status_description, amount::numeric,
         asset_code, chart_of_accounts_group_name, ledger_id, organization_id, body::jsonb,
         route, route_id, fees_skipped, tracer_skipped, created_at, COALESCE(updated_at, now()),
         deleted_at"
    };
}
