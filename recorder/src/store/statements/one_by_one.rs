//! The baseline the bulk mode is measured against, and what the reference ledger does without
//! bulk mode: per message, one statement for the transaction and one per operation, in one
//! database transaction. It follows the same rules as the bulk write (status transitions,
//! conflicting content decided on the latest stored version, a COMMIT known durable), one row
//! at a time.

use sqlx::{PgConnection, Row};

use super::{
    columns::{OPERATION, TRANSACTION, bind_cell},
    sql,
};
use crate::store::commit::{
    deadline::Deadline, errors::WriteError, resolve::Evidence, txn::OpenTxn,
};
use crate::store::{Written, db::Database};
use crate::{
    message::{Operation, Transaction},
    telemetry::counts::{RowCounts, WriteCounts},
};

/// Writes one message at a time, one row per statement.
#[derive(Clone)]
pub struct OneByOneWriter {
    db: Database,
}

impl OneByOneWriter {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Writes one transaction and its operations in one database transaction.
    pub async fn write(&self, t: &Transaction) -> Result<Written, WriteError> {
        let deadline = Deadline::for_write(
            self.db.write_budget(2 + 2 * t.operations.len()),
            &self.db.shutdown,
        );
        let mut txn = OpenTxn::begin(&self.db, &deadline).await?;
        let written = match write(txn.conn(), t, &deadline).await {
            Ok(written) => written,
            Err(error) => {
                if error.is_data() {
                    txn.rollback(&deadline).await;
                }
                return Err(error);
            }
        };
        txn.commit(&self.db, &deadline, written.1).await?;
        Ok(written.0)
    }
}

async fn write(
    conn: &mut PgConnection,
    t: &Transaction,
    deadline: &Deadline,
) -> Result<(Written, Evidence), WriteError> {
    let mut upsert = sqlx::query(&sql::ONE_TRANSACTION);
    for column in &TRANSACTION {
        upsert = bind_cell(upsert, column.kind, (column.value)(t, t));
    }
    let row = deadline
        .call("the transaction row", upsert.fetch_optional(&mut *conn))
        .await?;
    let inserted_now: Option<bool> = match &row {
        Some(row) => Some(row.try_get(1).map_err(WriteError::classify)?),
        None => None,
    };
    let mut statements = 1;
    let (inserted, updated, conflicting) = match inserted_now {
        Some(true) => (1, 0, 0),
        Some(false) => (0, 1, 0),
        None => {
            // Locked by the upsert: this statement reads its latest version.
            statements += 1;
            let query = sqlx::query_scalar(&sql::ONE_TRANSACTION_CONFLICTS)
                .bind(t.id)
                .bind(t.amount.as_ref().map(|a| a.as_str()))
                .bind(t.asset_code.as_str())
                .bind(t.ledger_id)
                .bind(t.organization_id)
                .bind(t.parent_transaction_id)
                .bind(t.status.code.as_str());
            let conflicting: bool = deadline
                .call("comparing with the stored row", query.fetch_one(&mut *conn))
                .await?;
            (0, 0, u64::from(conflicting))
        }
    };
    let mut evidence = (inserted + updated > 0).then_some(Evidence::Transaction(t.id));
    let ops = t.operations.len() as u64;
    let (mut ops_inserted, mut ops_conflicting) = (0, 0);
    if conflicting == 0 {
        for o in &t.operations {
            statements += 1;
            if insert_operation(conn, o, deadline).await? {
                ops_inserted += 1;
                evidence.get_or_insert(Evidence::Operation(o.id));
            } else {
                statements += 1;
                ops_conflicting += u64::from(operation_conflicts(conn, o, deadline).await?);
            }
        }
    }
    let counts = WriteCounts {
        transactions: RowCounts::with(1, inserted, updated, conflicting),
        operations: RowCounts::with(ops, ops_inserted, 0, conflicting * ops + ops_conflicting),
    };
    Ok((
        Written {
            counts,
            statements,
            conflicting: if conflicting > 0 {
                vec![t.id]
            } else {
                Vec::new()
            },
        },
        evidence.unwrap_or(Evidence::None),
    ))
}

/// Inserts one operation; false when its id is stored already.
async fn insert_operation(
    conn: &mut PgConnection,
    o: &Operation,
    deadline: &Deadline,
) -> Result<bool, WriteError> {
    let insert = with_operation(sqlx::query(&sql::ONE_OPERATION), o);
    let inserted = deadline
        .call("an operation row", insert.fetch_optional(&mut *conn))
        .await?;
    Ok(inserted.is_some())
}

/// Whether the stored operation with `o`'s id is another leg.
async fn operation_conflicts(
    conn: &mut PgConnection,
    o: &Operation,
    deadline: &Deadline,
) -> Result<bool, WriteError> {
    let query = with_operation(sqlx::query(&sql::ONE_OPERATION_CONFLICTS), o);
    let row = deadline
        .call(
            "comparing with the stored operation",
            query.fetch_optional(&mut *conn),
        )
        .await?;
    match row {
        Some(row) => row.try_get(0).map_err(WriteError::classify),
        None => Ok(false),
    }
}

/// `query` with `o`'s columns bound as its parameters, in the table's order.
fn with_operation<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    o: &'q Operation,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for column in &OPERATION {
        query = bind_cell(query, column.kind, (column.value)(o));
    }
    query
}
