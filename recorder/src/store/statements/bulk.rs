//! The bulk write: every transaction and operation of a bulk in one database transaction of
//! one or two statements.
//!
//! - A bulk of [`COPY_MIN_TRANSACTIONS`] new transactions or more goes in by binary `COPY` into
//!   both tables ([`super::copy`]); a `COPY` that meets a stored row fails whole, and the bulk is
//!   written by the upsert instead (which then serves the next bulks for a while: redeliveries
//!   come in runs).
//! - Any other bulk goes in by the upsert ([`super::upsert`]): rows travel as one array per
//!   column, expanded by `unnest`, so the statement text is the same for every bulk (prepared
//!   once per connection). New transactions are inserted; a stored PENDING transaction that the
//!   message moves to APPROVED or CANCELED is updated; anything else stored is classified in a
//!   second statement.
//!
//! Rows are sorted by id so that concurrent recorders lock index entries in the same order and
//! cannot deadlock; parents come before their children when a bulk is split.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Instant,
};

use super::{
    copy,
    merge::Merged,
    plan::plan,
    upsert::{PassResult, write_pass},
};
use crate::store::commit::{
    deadline::Deadline, errors::WriteError, resolve::Evidence, txn::OpenTxn,
};
use crate::store::{Written, db::Database};
use crate::{
    message::Transaction,
    telemetry::counts::{RowCounts, WriteCounts},
};

/// The fewest transactions for which `COPY` is tried first: below, its extra round-trips cost
/// more than the rows save.
pub const COPY_MIN_TRANSACTIONS: usize = 32;

/// Bulks written with the upsert after a `COPY` was refused.
const UPSERTS_AFTER_A_REFUSAL: u32 = 16;

/// Writes bulks of transactions.
#[derive(Clone)]
pub struct BulkWriter {
    db: Database,
    max_rows_per_insert: usize,
    /// Bulks to write with the upsert before trying `COPY` again.
    upserts_before_copy: Arc<AtomicU32>,
}

impl BulkWriter {
    pub fn new(db: Database, max_rows_per_insert: usize) -> Self {
        assert!(
            max_rows_per_insert > 0,
            "max_rows_per_insert must be positive"
        );
        Self {
            db,
            max_rows_per_insert,
            upserts_before_copy: Arc::default(),
        }
    }

    /// Writes all rows of `transactions` atomically: all of them are committed (and durable as
    /// the server is configured), or none.
    pub async fn write(&self, transactions: &[&Transaction]) -> Result<Written, WriteError> {
        let started = Instant::now();
        // Messages that contradict each other go to later passes (rare: a producer reusing an
        // id), so each pass sends every id once.
        let mut passes = vec![Merged::new(transactions)];
        while let Some(last) = passes.last()
            && !last.deferred.is_empty()
        {
            let next = Merged::new(&last.deferred);
            passes.push(next);
        }
        if passes.len() == 1 && passes[0].rows.len() >= COPY_MIN_TRANSACTIONS && self.copy_turn() {
            match self.copy(&passes[0]).await {
                Ok(written) => return Ok(written),
                // A row stored already (a redelivery, a transition), or anything else COPY
                // cannot take: COPY is only a faster way, the upsert decides the bulk's fate.
                Err(error) if error.is_data() => {
                    if !error.is_duplicate() {
                        tracing::warn!(%error, "COPY refused the bulk: writing it with the upsert");
                    }
                    self.upserts_before_copy
                        .store(UPSERTS_AFTER_A_REFUSAL, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
        let written = self.upsert(&mut passes).await?;
        tracing::debug!(
            transactions = transactions.len(),
            statements = written.statements,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "bulk written"
        );
        Ok(written)
    }

    /// Whether this bulk tries `COPY` first.
    fn copy_turn(&self) -> bool {
        self.upserts_before_copy
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
    }

    /// BEGIN, `COPY` of both tables, COMMIT: every row is new, or the whole bulk fails.
    async fn copy(&self, merged: &Merged<'_>) -> Result<Written, WriteError> {
        let deadline = Deadline::for_write(self.db.write_budget(2), &self.db.shutdown);
        let mut txn = OpenTxn::begin(&self.db, &deadline).await?;
        if let Err(error) = copy::copy(txn.conn(), merged, &deadline).await {
            if error.is_data() {
                txn.rollback(&deadline).await;
            }
            return Err(error);
        }
        let evidence = merged
            .rows
            .first()
            .map_or(Evidence::None, |r| Evidence::Transaction(r.content.id));
        txn.commit(&self.db, &deadline, evidence).await?;
        let result = PassResult {
            inserted: merged.rows.len() as u64,
            inserted_transitions: merged.rows.iter().filter(|r| r.transition).count() as u64,
            operations_inserted: merged.operations.len() as u64,
            ..Default::default()
        };
        Ok(Written {
            counts: counts(merged, &result),
            statements: 2,
            conflicting: Vec::new(),
        })
    }

    /// BEGIN, every pass's statements, COMMIT: all rows or none.
    async fn upsert(&self, passes: &mut [Merged<'_>]) -> Result<Written, WriteError> {
        let plans: Vec<_> = passes
            .iter()
            .map(|m| plan(m.rows.len(), m.operations.len(), self.max_rows_per_insert))
            .collect();
        // Each pass may add a statement that classifies stored rows.
        let statements = plans.iter().map(|p| p.len() + 1).sum();
        let deadline = Deadline::for_write(self.db.write_budget(statements), &self.db.shutdown);
        let mut txn = OpenTxn::begin(&self.db, &deadline).await?;
        let mut results = Vec::with_capacity(passes.len());
        for (merged, chunks) in passes.iter_mut().zip(&plans) {
            // Later statements must find the parents the earlier ones wrote.
            if chunks.len() > 1 && merged.has_parents_inside() {
                merged.order_parents_first();
            }
            match write_pass(txn.conn(), merged, chunks, &deadline).await {
                Ok(result) => results.push(result),
                Err(error) => {
                    if error.is_data() {
                        txn.rollback(&deadline).await;
                    }
                    return Err(error);
                }
            }
        }
        let evidence = results
            .iter()
            .find_map(|r| r.evidence)
            .unwrap_or(Evidence::None);
        txn.commit(&self.db, &deadline, evidence).await?;
        let mut written = Written::default();
        for (merged, result) in passes.iter().zip(&results) {
            written.counts += counts(merged, result);
            written.statements += result.statements;
            written.conflicting.extend_from_slice(&result.conflicts);
        }
        Ok(written)
    }
}

/// Every message of the bulk is one of inserted, updated, conflicting or ignored.
fn counts(merged: &Merged, result: &PassResult) -> WriteCounts {
    let conflicting_messages: u64 = merged
        .rows
        .iter()
        .filter(|row| result.conflicts.contains(&row.content.id))
        .map(|row| row.messages)
        .sum();
    if !result.conflicts.is_empty() || result.operations_conflicting > 0 {
        tracing::warn!(
            transaction_ids = ?result.conflicts,
            operations = result.operations_conflicting,
            "ids already stored with other content: the stored rows are kept and these counted \
             as conflicting (is a producer reusing ids?)"
        );
    }
    WriteCounts {
        transactions: RowCounts::with(
            merged.attempted_transactions,
            result.inserted,
            result.updated + result.inserted_transitions,
            conflicting_messages,
        ),
        operations: RowCounts::with(
            merged.attempted_operations,
            result.operations_inserted,
            0,
            result.operations_of_conflicts + result.operations_conflicting,
        ),
    }
}
