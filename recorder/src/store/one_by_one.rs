//! The baseline the bulk mode is measured against, and what the reference ledger does without
//! bulk mode: per message, one statement for the transaction and one per operation, in one
//! database transaction. It follows the same rules as the bulk write (status transitions,
//! conflicting content), one row at a time.

use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool, Postgres};

use super::{Written, commit::Deadline, json, text};
use crate::{
    message::{Operation, Transaction},
    store::db::WriteError,
    telemetry::counts::{RowCounts, WriteCounts},
};

const UPSERT_TRANSACTION: &str = concat!(
    "INSERT INTO transaction AS s (",
    transaction_columns!(),
    ") SELECT ",
    transaction_values!(),
    " FROM (VALUES ($1::uuid, $2::uuid, $3::text, $4::text, $5::text, $6::text, $7::text,
        $8::text, $9::uuid, $10::uuid, $11::text, $12::text, $13::uuid, $14::bool, $15::bool,
        $16::timestamptz, $17::timestamptz, $18::timestamptz)) AS r(",
    transaction_columns!(),
    ") ",
    upsert_transaction!()
);

/// Asked only when the upsert left a stored row alone: is it another transaction?
const CONFLICTS: &str = concat!(
    "SELECT ",
    conflicting!(),
    " FROM transaction s, (VALUES ($1::uuid, $2::text, $3::text, $4::uuid, $5::uuid,
        $6::uuid, $7::text)) AS i(id, amount, asset_code, ledger_id, organization_id,
        parent_transaction_id, status)
    WHERE s.id = i.id"
);

const INSERT_OPERATION: &str = concat!(
    "INSERT INTO operation (",
    operation_columns!(),
    ") SELECT ",
    operation_values!(),
    " FROM (VALUES ($1::uuid, $2::uuid, $3::text, $4::text, $5::text, $6::text, $7::text,
        $8::text, $9::text, $10::text, $11::int8, $12::int8, $13::text, $14::text, $15::uuid,
        $16::text, $17::uuid, $18::text, $19::text, $20::uuid, $21::uuid, $22::text, $23::uuid,
        $24::text, $25::text, $26::text, $27::bool, $28::text, $29::timestamptz,
        $30::timestamptz, $31::timestamptz)) AS r(",
    operation_columns!(),
    ") ON CONFLICT (id) DO NOTHING"
);

/// Writes one message at a time, one row per statement.
#[derive(Clone)]
pub struct OneByOneWriter {
    pool: PgPool,
    /// The longest one message's write may take.
    timeout: Duration,
}

impl OneByOneWriter {
    pub fn new(pool: PgPool, timeout: Duration) -> Self {
        Self { pool, timeout }
    }

    /// Writes one transaction and its operations in one database transaction.
    pub async fn write(&self, t: &Transaction) -> Result<Written, WriteError> {
        let deadline = Deadline::after(self.timeout);
        let mut conn = deadline
            .call("waiting for a connection", self.pool.acquire())
            .await?;
        let result = write(&mut conn, t, &deadline).await;
        if result.as_ref().is_err_and(|e| !e.is_data()) {
            conn.close_on_drop();
        }
        result
    }
}

async fn write(
    conn: &mut PgConnection,
    t: &Transaction,
    deadline: &Deadline,
) -> Result<Written, WriteError> {
    let mut db = deadline.call("BEGIN", conn.begin()).await?;
    let upsert = sqlx::query_as(UPSERT_TRANSACTION)
        .bind(t.id)
        .bind(t.parent_transaction_id)
        .bind(&t.description)
        .bind(&t.status.code)
        .bind(&t.status.description)
        .bind(text(t.amount.as_ref()))
        .bind(&t.asset_code)
        .bind(&t.chart_of_accounts_group_name)
        .bind(t.ledger_id)
        .bind(t.organization_id)
        .bind(json(t.body.as_ref()))
        .bind(&t.route)
        .bind(t.route_id)
        .bind(t.fees_skipped)
        .bind(t.tracer_skipped)
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.deleted_at);
    let written: Option<(uuid::Uuid, bool)> = deadline
        .call("the transaction row", upsert.fetch_optional(&mut *db))
        .await?;
    let mut statements = 1;
    let (inserted, updated, conflicting) = match written {
        Some((_, true)) => (1, 0, 0),
        Some((_, false)) => (0, 1, 0),
        None => {
            statements += 1;
            let query = sqlx::query_scalar(CONFLICTS)
                .bind(t.id)
                .bind(text(t.amount.as_ref()))
                .bind(&t.asset_code)
                .bind(t.ledger_id)
                .bind(t.organization_id)
                .bind(t.parent_transaction_id)
                .bind(&t.status.code);
            let conflicting: bool = deadline
                .call("comparing with the stored row", query.fetch_one(&mut *db))
                .await?;
            (0, 0, u64::from(conflicting))
        }
    };
    let ops = t.operations.len() as u64;
    let mut inserted_ops = 0;
    if conflicting == 0 {
        for o in &t.operations {
            inserted_ops += insert_operation(&mut db, o, deadline).await?;
            statements += 1;
        }
    }
    deadline.call("COMMIT", db.commit()).await?;
    Ok(Written {
        counts: WriteCounts {
            transactions: RowCounts::with(1, inserted, updated, conflicting),
            operations: RowCounts::with(ops, inserted_ops, 0, conflicting * ops),
        },
        statements,
    })
}

async fn insert_operation(
    db: &mut sqlx::Transaction<'_, Postgres>,
    o: &Operation,
    deadline: &Deadline,
) -> Result<u64, WriteError> {
    let before = o.balance.as_ref();
    let after = o.balance_after.as_ref();
    let insert = sqlx::query(INSERT_OPERATION)
        .bind(o.id)
        .bind(o.transaction_id)
        .bind(&o.description)
        .bind(&o.kind)
        .bind(&o.asset_code)
        .bind(text(o.amount.as_ref().and_then(|a| a.value.as_ref())))
        .bind(text(before.and_then(|b| b.available.as_ref())))
        .bind(text(before.and_then(|b| b.on_hold.as_ref())))
        .bind(text(after.and_then(|b| b.available.as_ref())))
        .bind(text(after.and_then(|b| b.on_hold.as_ref())))
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
        .bind(&o.route_code)
        .bind(&o.route_description)
        .bind(&o.direction)
        .bind(o.balance_affected)
        .bind(json(o.snapshot.as_ref()))
        .bind(o.created_at)
        .bind(o.updated_at)
        .bind(o.deleted_at);
    Ok(deadline
        .call("an operation row", insert.execute(&mut **db))
        .await?
        .rows_affected())
}
