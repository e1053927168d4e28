//! The upsert path of a bulk: one pass of merged rows through the bulk statement
//! ([`super::sql::Statements::bulk_upsert`], split at `maxRowsPerInsert`), then, only when it met
//! stored rows, the classifying one ([`super::sql::Statements::classify`]; and, when a concurrent
//! writer raced it on an operation id, [`super::sql::Statements::classify_operations`]).

use std::collections::HashSet;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::telemetry::traces;

use super::{
    columns::{Array, operation_arrays, transaction_arrays},
    layout::Layout,
    merge::{Merged, Row},
    plan::Chunk,
};
use crate::message::Operation;
use crate::store::commit::{deadline::Deadline, errors::WriteError, resolve::Evidence};

/// What one pass wrote and found.
#[derive(Debug, Default)]
pub struct PassResult {
    pub inserted: u64,
    /// Inserted rows that stand for a PENDING message and its commit or cancel.
    pub inserted_transitions: u64,
    pub updated: u64,
    /// Transaction ids stored with other content: their messages are conflicting.
    pub conflicts: Vec<Uuid>,
    pub operations_inserted: u64,
    /// Operations of conflicting transactions, left out.
    pub operations_of_conflicts: u64,
    /// Operation ids stored with other content.
    pub operations_conflicting: u64,
    pub statements: u64,
    /// A row this pass wrote, to resolve a lost COMMIT answer.
    pub evidence: Option<Evidence>,
}

/// Writes one pass (its statements in the caller's database transaction).
pub async fn write_pass(
    conn: &mut PgConnection,
    layout: &Layout,
    merged: &Merged<'_>,
    chunks: &[Chunk],
    deadline: &Deadline,
) -> Result<PassResult, WriteError> {
    let mut result = PassResult::default();
    let mut conflicts: HashSet<Uuid> = HashSet::new();
    let mut racing: HashSet<Uuid> = HashSet::new();
    let mut racing_operations: Vec<Uuid> = Vec::new();
    for (t, o) in chunks {
        // Operations of a transaction an earlier statement found conflicting stay out; those of
        // a racing one wait for CLASSIFY.
        let mut ops = Vec::with_capacity(o.len());
        for op in &merged.operations[o.clone()] {
            if conflicts.contains(&op.transaction_id) {
                result.operations_of_conflicts += 1;
            } else if !racing.contains(&op.transaction_id) {
                ops.push(*op);
            }
        }
        let rows = &merged.rows[t.clone()];
        let answer = traces::step(
            "INSERT transaction, operation (unnest)",
            upsert(conn, layout, rows, &ops, deadline),
        )
        .await?;
        result.statements += 1;
        result.inserted += answer.inserted;
        result.inserted_transitions += answer.inserted_transitions;
        result.updated += answer.updated;
        result.operations_inserted += answer.operations_inserted;
        result.operations_of_conflicts += answer.operations_of_conflicts;
        result.operations_conflicting += answer.operations_conflicting;
        result.evidence = result.evidence.or(answer.evidence);
        result.conflicts.extend(answer.conflicts.iter().copied());
        conflicts.extend(answer.conflicts);
        racing.extend(answer.racing);
        racing_operations.extend(answer.racing_operations);
    }
    if !racing.is_empty() || !racing_operations.is_empty() {
        classify(
            conn,
            layout,
            merged,
            &racing,
            &racing_operations,
            deadline,
            &mut result,
        )
        .await?;
    }
    Ok(result)
}

/// What the bulk statement answered.
struct UpsertAnswer {
    inserted: u64,
    inserted_transitions: u64,
    updated: u64,
    racing: Vec<Uuid>,
    conflicts: Vec<Uuid>,
    operations_inserted: u64,
    operations_of_conflicts: u64,
    operations_conflicting: u64,
    racing_operations: Vec<Uuid>,
    evidence: Option<Evidence>,
}

type Returned = (
    i64,
    i64,
    i64,
    Option<Uuid>,
    Option<Vec<Uuid>>,
    Option<Vec<Uuid>>,
    i64,
    Option<Uuid>,
    i64,
    i64,
    Option<Vec<Uuid>>,
);

async fn upsert(
    conn: &mut PgConnection,
    layout: &Layout,
    rows: &[Row<'_>],
    ops: &[&Operation],
    deadline: &Deadline,
) -> Result<UpsertAnswer, WriteError> {
    let mut query = sqlx::query(&layout.statements.bulk_upsert);
    for array in transaction_arrays(
        &layout.transaction,
        rows.iter().map(|r| (r.content, r.state)),
    ) {
        query = array.bind(query);
    }
    query = query.bind(rows.iter().map(|r| r.transition).collect::<Vec<bool>>());
    for array in operation_arrays(&layout.operation, ops) {
        query = array.bind(query);
    }
    let row = deadline
        .call("the bulk statement", query.fetch_one(&mut *conn))
        .await?;
    let r: Returned = sqlx::FromRow::from_row(&row).map_err(WriteError::classify)?;
    let evidence =
        r.3.map(Evidence::Transaction)
            .or(r.7.map(Evidence::Operation));
    Ok(UpsertAnswer {
        inserted: r.0 as u64,
        inserted_transitions: r.1 as u64,
        updated: r.2 as u64,
        racing: r.4.unwrap_or_default(),
        conflicts: r.5.unwrap_or_default(),
        operations_inserted: r.6 as u64,
        operations_of_conflicts: r.8 as u64,
        operations_conflicting: r.9 as u64,
        racing_operations: r.10.unwrap_or_default(),
        evidence,
    })
}

/// The transactions another writer changed after the upsert's snapshot (locked by the upsert
/// since), read on their latest version: other content is a conflict; the operations of the
/// others are inserted, and stored operations are told apart (the same leg, or another one
/// under the same id).
async fn classify(
    conn: &mut PgConnection,
    layout: &Layout,
    merged: &Merged<'_>,
    stored: &HashSet<Uuid>,
    stored_operations: &[Uuid],
    deadline: &Deadline,
    result: &mut PassResult,
) -> Result<(), WriteError> {
    let rows: Vec<&Row> = merged
        .rows
        .iter()
        .filter(|r| stored.contains(&r.content.id))
        .collect();
    let again: HashSet<&Uuid> = stored_operations.iter().collect();
    let ops: Vec<&Operation> = merged
        .operations
        .iter()
        .copied()
        .filter(|op| stored.contains(&op.transaction_id) || again.contains(&op.id))
        .collect();
    let (conflicts, inserted, of_conflicts, conflicting, racing) = traces::step(
        "SELECT stored rows another writer changed",
        classify_statement(conn, layout, &rows, &ops, deadline),
    )
    .await?;
    result.statements += 1;
    let inserted = inserted.unwrap_or_default();
    if result.evidence.is_none() {
        result.evidence = inserted.first().map(|id| Evidence::Operation(*id));
    }
    result.operations_inserted += inserted.len() as u64;
    result.conflicts.extend(conflicts.unwrap_or_default());
    result.operations_of_conflicts += of_conflicts as u64;
    result.operations_conflicting += conflicting as u64;
    let racing = racing.unwrap_or_default();
    if !racing.is_empty() {
        let racing: HashSet<&Uuid> = racing.iter().collect();
        let ops: Vec<&Operation> = ops
            .into_iter()
            .filter(|op| racing.contains(&op.id))
            .collect();
        result.operations_conflicting += classify_operations(conn, layout, &ops, deadline).await?;
        result.statements += 1;
    }
    Ok(())
}

type Classified = (
    Option<Vec<Uuid>>,
    Option<Vec<Uuid>>,
    i64,
    i64,
    Option<Vec<Uuid>>,
);

/// Sends the classifying statement for `rows` (stored transactions) and `ops`.
async fn classify_statement(
    conn: &mut PgConnection,
    layout: &Layout,
    rows: &[&Row<'_>],
    ops: &[&Operation],
    deadline: &Deadline,
) -> Result<Classified, WriteError> {
    let mut query = sqlx::query(&layout.statements.classify)
        .bind(rows.iter().map(|r| r.content.id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.content.amount.as_ref().map(|a| a.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.content.asset_code.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.content.ledger_id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.content.organization_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.content.parent_transaction_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.state.status.code.as_str())
                .collect::<Vec<_>>(),
        );
    for array in operation_arrays(&layout.operation, ops) {
        query = array.bind(query);
    }
    let row = deadline
        .call("classifying stored rows", query.fetch_one(&mut *conn))
        .await?;
    sqlx::FromRow::from_row(&row).map_err(WriteError::classify)
}

/// Operations a concurrent writer inserted after the classifying statement's snapshot: how many
/// are other legs under the same id.
async fn classify_operations(
    conn: &mut PgConnection,
    layout: &Layout,
    ops: &[&Operation],
    deadline: &Deadline,
) -> Result<u64, WriteError> {
    let mut query = sqlx::query(&layout.statements.classify_operations);
    for array in operation_arrays(&layout.operation, ops) {
        query = Array::bind(array, query);
    }
    let (conflicting, found): (i64, i64) = deadline
        .call("classifying racing operations", query.fetch_one(&mut *conn))
        .await
        .and_then(|row| sqlx::FromRow::from_row(&row).map_err(WriteError::classify))?;
    if found < ops.len() as i64 {
        tracing::warn!(
            expected = ops.len(),
            found,
            "operations stored by a concurrent writer could not all be read back"
        );
    }
    Ok(conflicting as u64)
}
