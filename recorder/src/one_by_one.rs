//! The baseline the bulk mode is measured against, and what the reference ledger does without
//! bulk mode: per message, one INSERT for the transaction and one per operation, in one
//! database transaction.

use sqlx::{PgPool, Postgres};

use crate::{
    counts::{RowCounts, WriteCounts},
    db::WriteError,
    message::{Operation, Transaction},
    writer::Written,
};

const INSERT_TRANSACTION: &str = "INSERT INTO transaction (id, parent_transaction_id, \
    description, status, status_description, amount, asset_code, chart_of_accounts_group_name, \
    ledger_id, organization_id, route, route_id, created_at, updated_at, deleted_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, COALESCE($14, now()), $15) \
    ON CONFLICT (id) DO NOTHING";

const INSERT_OPERATION: &str = "INSERT INTO operation (id, transaction_id, description, type, \
    asset_code, amount, available_balance, on_hold_balance, available_balance_after, \
    on_hold_balance_after, balance_version_before, balance_version_after, status, \
    status_description, account_id, account_alias, balance_id, balance_key, chart_of_accounts, \
    organization_id, ledger_id, route, route_id, direction, balance_affected, created_at, \
    updated_at, deleted_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, 0), COALESCE($12, 0), $13, \
    $14, $15, $16, $17, COALESCE($18, 'default'), $19, $20, $21, $22, $23, $24, \
    COALESCE($25, true), $26, COALESCE($27, now()), $28) \
    ON CONFLICT (id) DO NOTHING";

/// Writes one transaction and its operations, one row per statement.
pub async fn write(pool: &PgPool, t: &Transaction) -> Result<Written, WriteError> {
    let mut db = pool.begin().await.map_err(WriteError::classify)?;
    let inserted_txn = sqlx::query(INSERT_TRANSACTION)
        .bind(t.id)
        .bind(t.parent_transaction_id)
        .bind(&t.description)
        .bind(&t.status.code)
        .bind(&t.status.description)
        .bind(t.amount)
        .bind(&t.asset_code)
        .bind(&t.chart_of_accounts_group_name)
        .bind(t.ledger_id)
        .bind(t.organization_id)
        .bind(&t.route)
        .bind(t.route_id)
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.deleted_at)
        .execute(&mut *db)
        .await
        .map_err(WriteError::classify)?
        .rows_affected();
    let mut inserted_ops = 0;
    for o in &t.operations {
        inserted_ops += insert_operation(&mut db, o).await?;
    }
    db.commit().await.map_err(WriteError::classify)?;
    let ops = t.operations.len() as u64;
    Ok(Written {
        counts: WriteCounts {
            transactions: RowCounts::new(1, inserted_txn),
            operations: RowCounts::new(ops, inserted_ops),
        },
        statements: 1 + ops,
    })
}

async fn insert_operation(
    db: &mut sqlx::Transaction<'_, Postgres>,
    o: &Operation,
) -> Result<u64, WriteError> {
    let before = o.balance.as_ref();
    let after = o.balance_after.as_ref();
    Ok(sqlx::query(INSERT_OPERATION)
        .bind(o.id)
        .bind(o.transaction_id)
        .bind(&o.description)
        .bind(&o.kind)
        .bind(&o.asset_code)
        .bind(o.amount.as_ref().and_then(|a| a.value))
        .bind(before.and_then(|b| b.available))
        .bind(before.and_then(|b| b.on_hold))
        .bind(after.and_then(|b| b.available))
        .bind(after.and_then(|b| b.on_hold))
        .bind(before.and_then(|b| b.version))
        .bind(after.and_then(|b| b.version))
        .bind(&o.status.code)
        .bind(&o.status.description)
        .bind(o.account_id)
        .bind(&o.account_alias)
        .bind(o.balance_id)
        .bind(&o.balance_key)
        .bind(&o.chart_of_accounts)
        .bind(o.organization_id)
        .bind(o.ledger_id)
        .bind(&o.route)
        .bind(o.route_id)
        .bind(&o.direction)
        .bind(o.balance_affected)
        .bind(o.created_at)
        .bind(o.updated_at)
        .bind(o.deleted_at)
        .execute(&mut **db)
        .await
        .map_err(WriteError::classify)?
        .rows_affected())
}
