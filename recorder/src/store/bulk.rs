//! The bulk write: every transaction and operation of a bulk in one statement.
//!
//! Rows travel as one array per column and are expanded by `unnest`, so the statement text is
//! the same for every bulk (prepared once per connection) and binds 50 parameters whatever the
//! bulk holds. A data-modifying CTE writes both tables at once; the foreign keys are checked
//! at the end of the statement, when both are in.
//!
//! Transactions are upserted: a new id is inserted; a stored PENDING transaction that the
//! message moves to APPROVED or CANCELED is updated (status, description, `updated_at`);
//! anything else is left alone. `xmax = 0` tells inserted rows from updated ones in the same
//! round-trip. A stored id whose content differs from the message (and is no valid transition)
//! is reported as conflicting and its operations are not written.
//!
//! Rows are sorted by id so that concurrent recorders lock index entries in the same order and
//! cannot deadlock.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection, PgPool, Postgres};
use uuid::Uuid;

use super::{
    Written,
    columns::{OperationColumns, TransactionColumns},
    commit::{self, Deadline},
    copy,
    merge::{Merged, Row},
};
use crate::{
    message::{Operation, Transaction},
    store::db::WriteError,
    telemetry::counts::{RowCounts, WriteCounts},
};

const BULK_UPSERT: &str = concat!(
    "WITH t_in AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::uuid[], $10::uuid[], $11::text[],
            $12::text[], $13::uuid[], $14::bool[], $15::bool[], $16::timestamptz[],
            $17::timestamptz[], $18::timestamptz[], $19::bool[])
            AS r(",
    transaction_columns!(),
    ", transition)
    ), t AS (
        INSERT INTO transaction AS s (",
    transaction_columns!(),
    ") SELECT ",
    transaction_values!(),
    " FROM t_in ",
    upsert_transaction!(),
    "), conflicts AS (
        SELECT i.id FROM t_in i JOIN transaction s ON s.id = i.id
        WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id = i.id) AND ",
    conflicting!(),
    "), o_in AS (
        SELECT * FROM unnest($20::uuid[], $21::uuid[], $22::text[], $23::text[], $24::text[],
            $25::text[], $26::text[], $27::text[], $28::text[], $29::text[], $30::int8[],
            $31::int8[], $32::text[], $33::text[], $34::uuid[], $35::text[], $36::uuid[],
            $37::text[], $38::text[], $39::uuid[], $40::uuid[], $41::text[], $42::uuid[],
            $43::text[], $44::text[], $45::text[], $46::bool[], $47::text[],
            $48::timestamptz[], $49::timestamptz[], $50::timestamptz[])
            AS r(",
    operation_columns!(),
    ")
    ), o AS (
        INSERT INTO operation (",
    operation_columns!(),
    ") SELECT ",
    operation_values!(),
    " FROM o_in WHERE transaction_id NOT IN (SELECT id FROM conflicts)
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM t WHERE inserted),
        (SELECT count(*) FROM t JOIN t_in USING (id) WHERE t.inserted AND t_in.transition),
        (SELECT count(*) FROM t WHERE NOT inserted),
        (SELECT array_agg(id) FROM conflicts),
        (SELECT count(*) FROM o),
        (SELECT count(*) FROM o_in WHERE transaction_id IN (SELECT id FROM conflicts)),
        txid_current(), pg_backend_pid()"
);

/// How a bulk is written.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// `COPY` into the tables: only when every row is new.
    Copy,
    /// The upsert statement: any bulk.
    Upsert,
}

/// What one statement did.
#[derive(Debug, Default)]
struct Outcome {
    inserted: u64,
    /// Inserted rows that stand for a PENDING message and its commit or cancel.
    inserted_transitions: u64,
    updated: u64,
    conflicts: Vec<Uuid>,
    operations_inserted: u64,
    operations_of_conflicts: u64,
    writer: Option<commit::Writer>,
}

/// Writes bulks of transactions.
#[derive(Clone)]
pub struct BulkWriter {
    pool: PgPool,
    max_rows_per_insert: usize,
    /// A write may take this long per statement, plus `margin` (BEGIN, COMMIT, the network).
    statement_timeout: Duration,
    margin: Duration,
    /// Bulks to write with the upsert before trying `COPY` again, after a `COPY` was refused
    /// (redeliveries come in runs, after a restart for example).
    upserts_before_copy: Arc<AtomicU32>,
}

/// The fewest transactions for which `COPY` is tried first: below, its extra round-trips cost
/// more than the rows save.
pub const COPY_MIN_TRANSACTIONS: usize = 32;

/// Bulks written with the upsert after a `COPY` was refused.
const UPSERTS_AFTER_A_REFUSAL: u32 = 16;

impl BulkWriter {
    pub fn new(
        pool: PgPool,
        max_rows_per_insert: usize,
        statement_timeout: Duration,
        margin: Duration,
    ) -> Self {
        assert!(
            max_rows_per_insert > 0,
            "max_rows_per_insert must be positive"
        );
        Self {
            pool,
            max_rows_per_insert,
            statement_timeout,
            margin,
            upserts_before_copy: Arc::default(),
        }
    }

    /// Writes all rows of `transactions` atomically: all of them are committed, or none.
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
        let plans: Vec<Vec<Chunk>> = passes
            .iter()
            .map(|m| plan(m.rows.len(), m.operations.len(), self.max_rows_per_insert))
            .collect();
        if passes.len() == 1 && passes[0].rows.len() >= COPY_MIN_TRANSACTIONS && self.copy_turn() {
            match self.attempt(Path::Copy, &mut passes, &[]).await {
                Ok(written) => return Ok(written),
                // Refused on data: a row stored already (a redelivery, a transition), or
                // anything else COPY cannot take (a column of another type in the ledger's
                // tables). COPY is only a faster way: the upsert decides the bulk's fate.
                Err(error) if error.is_data() => {
                    if error.is_duplicate() {
                        tracing::debug!(
                            "a row of the bulk is stored already: writing it with the upsert"
                        );
                    } else {
                        tracing::warn!(%error, "COPY refused the bulk: writing it with the upsert");
                    }
                    self.upserts_before_copy
                        .store(UPSERTS_AFTER_A_REFUSAL, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
        let written = self.attempt(Path::Upsert, &mut passes, &plans).await?;
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

    /// One database transaction writing `passes` by `path`, on a connection of its own, within
    /// one deadline.
    async fn attempt(
        &self,
        path: Path,
        passes: &mut [Merged<'_>],
        plans: &[Vec<Chunk>],
    ) -> Result<Written, WriteError> {
        let statements = match path {
            Path::Copy => 2,
            Path::Upsert => plans.iter().map(Vec::len).sum(),
        };
        let deadline = Deadline::after(self.statement_timeout * statements as u32 + self.margin);
        let mut conn = deadline
            .call("waiting for a connection", self.pool.acquire())
            .await?;
        let result = match path {
            Path::Copy => self.copy_pass(&mut conn, &passes[0], &deadline).await,
            Path::Upsert => self.write_passes(&mut conn, passes, plans, &deadline).await,
        };
        if result.as_ref().is_err_and(|e| !e.is_data()) {
            // Lost, silent or confused: never hand this connection to the next bulk.
            conn.close_on_drop();
        }
        let outcomes = result?;
        let mut written = Written {
            statements: statements as u64,
            ..Default::default()
        };
        for (merged, outcome) in passes.iter().zip(&outcomes) {
            written.counts += counts(merged, outcome);
        }
        Ok(written)
    }

    /// BEGIN, COPY of both tables, COMMIT: every row is new, or the whole bulk fails.
    async fn copy_pass(
        &self,
        conn: &mut PgConnection,
        merged: &Merged<'_>,
        deadline: &Deadline,
    ) -> Result<Vec<Outcome>, WriteError> {
        let mut tx = deadline.call("BEGIN", conn.begin()).await?;
        let (xid, backend_pid): (i64, i32) = deadline
            .call(
                "BEGIN",
                sqlx::query_as("SELECT txid_current(), pg_backend_pid()").fetch_one(&mut *tx),
            )
            .await?;
        let copied = copy::copy(&mut tx, merged, deadline).await?;
        debug_assert_eq!(copied as usize, merged.rows.len() + merged.operations.len());
        let writer = commit::Writer { xid, backend_pid };
        commit::commit(tx, writer, &self.pool, deadline).await?;
        Ok(vec![Outcome {
            inserted: merged.rows.len() as u64,
            inserted_transitions: merged.rows.iter().filter(|r| r.transition).count() as u64,
            operations_inserted: merged.operations.len() as u64,
            writer: Some(writer),
            ..Default::default()
        }])
    }

    /// BEGIN, every pass's statements, COMMIT: all rows or none.
    async fn write_passes(
        &self,
        conn: &mut PgConnection,
        passes: &mut [Merged<'_>],
        plans: &[Vec<Chunk>],
        deadline: &Deadline,
    ) -> Result<Vec<Outcome>, WriteError> {
        let mut tx = deadline.call("BEGIN", conn.begin()).await?;
        let mut outcomes = Vec::with_capacity(passes.len());
        for (merged, chunks) in passes.iter_mut().zip(plans) {
            // Later statements must find the parents the earlier ones wrote.
            if chunks.len() > 1 && merged.has_parents_inside() {
                merged.order_parents_first();
            }
            outcomes.push(upsert_chunks(&mut tx, chunks, merged, deadline).await?);
        }
        let writer = outcomes
            .iter()
            .find_map(|o| o.writer)
            .expect("a write sends at least one statement");
        commit::commit(tx, writer, &self.pool, deadline).await?;
        Ok(outcomes)
    }
}

/// Every message of the bulk is one of inserted, updated, conflicting or ignored.
fn counts(merged: &Merged, outcome: &Outcome) -> WriteCounts {
    let conflicting_rows: u64 = merged
        .rows
        .iter()
        .filter(|row| outcome.conflicts.contains(&row.content.id))
        .map(|row| row.messages)
        .sum();
    if !outcome.conflicts.is_empty() {
        tracing::warn!(
            transaction_ids = ?outcome.conflicts,
            "transaction ids already stored with other content: the stored rows are kept and \
             these messages counted as conflicting (is a producer reusing ids?)"
        );
    }
    WriteCounts {
        transactions: RowCounts::with(
            merged.attempted_transactions,
            outcome.inserted,
            outcome.updated + outcome.inserted_transitions,
            conflicting_rows,
        ),
        operations: RowCounts::with(
            merged.attempted_operations,
            outcome.operations_inserted,
            0,
            outcome.operations_of_conflicts,
        ),
    }
}

/// One statement's share of the rows: a range of transactions and one of operations.
type Chunk = (std::ops::Range<usize>, std::ops::Range<usize>);

/// Splits `txns` and `ops` rows into statements of at most `max` rows per table. Transactions
/// go first, so an operation's transaction is always in the same or an earlier statement; the
/// last transaction chunk shares its statement with the first operation chunk.
pub fn plan(txns: usize, ops: usize, max: usize) -> Vec<Chunk> {
    let ranges = |n: usize| -> Vec<std::ops::Range<usize>> {
        (0..n.div_ceil(max))
            .map(|i| i * max..((i + 1) * max).min(n))
            .collect()
    };
    let (t, o) = (ranges(txns), ranges(ops));
    let mut chunks: Vec<Chunk> = Vec::with_capacity(t.len() + o.len());
    let empty = 0..0;
    for (i, range) in t.iter().enumerate() {
        let ops_here = if i + 1 == t.len() {
            o.first().cloned().unwrap_or(empty.clone())
        } else {
            empty.clone()
        };
        chunks.push((range.clone(), ops_here));
    }
    let skip = usize::from(!t.is_empty());
    chunks.extend(o.into_iter().skip(skip).map(|range| (empty.clone(), range)));
    if chunks.is_empty() {
        chunks.push((empty.clone(), empty));
    }
    chunks
}

async fn upsert_chunks(
    db: &mut sqlx::Transaction<'_, Postgres>,
    chunks: &[Chunk],
    merged: &Merged<'_>,
    deadline: &Deadline,
) -> Result<Outcome, WriteError> {
    let mut total = Outcome::default();
    let mut skipped: HashSet<Uuid> = HashSet::new();
    for (t, o) in chunks {
        // Operations of a transaction that conflicted in an earlier statement stay out.
        let ops: Vec<&Operation> = merged.operations[o.clone()]
            .iter()
            .copied()
            .filter(|op| !skipped.contains(&op.transaction_id))
            .collect();
        total.operations_of_conflicts += (o.len() - ops.len()) as u64;
        let outcome = upsert(&mut **db, &merged.rows[t.clone()], &ops, deadline).await?;
        skipped.extend(outcome.conflicts.iter().copied());
        total.inserted += outcome.inserted;
        total.inserted_transitions += outcome.inserted_transitions;
        total.updated += outcome.updated;
        total.conflicts.extend(outcome.conflicts);
        total.operations_inserted += outcome.operations_inserted;
        total.operations_of_conflicts += outcome.operations_of_conflicts;
        total.writer = total.writer.or(outcome.writer);
    }
    Ok(total)
}

/// Sends one statement.
async fn upsert<'c, E>(
    executor: E,
    rows: &[Row<'_>],
    ops: &[&Operation],
    deadline: &Deadline,
) -> Result<Outcome, WriteError>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let t = TransactionColumns::new(rows);
    let o = OperationColumns::new(ops);
    type Returned = (i64, i64, i64, Option<Vec<Uuid>>, i64, i64, i64, i32);
    let query = sqlx::query_as(BULK_UPSERT)
        .bind(t.id)
        .bind(t.parent_transaction_id)
        .bind(t.description)
        .bind(t.status)
        .bind(t.status_description)
        .bind(t.amount)
        .bind(t.asset_code)
        .bind(t.chart_of_accounts_group_name)
        .bind(t.ledger_id)
        .bind(t.organization_id)
        .bind(t.body)
        .bind(t.route)
        .bind(t.route_id)
        .bind(t.fees_skipped)
        .bind(t.tracer_skipped)
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.deleted_at)
        .bind(t.transition)
        .bind(o.id)
        .bind(o.transaction_id)
        .bind(o.description)
        .bind(o.kind)
        .bind(o.asset_code)
        .bind(o.amount)
        .bind(o.available_balance)
        .bind(o.on_hold_balance)
        .bind(o.available_balance_after)
        .bind(o.on_hold_balance_after)
        .bind(o.balance_version_before)
        .bind(o.balance_version_after)
        .bind(o.status)
        .bind(o.status_description)
        .bind(o.account_id)
        .bind(o.account_alias)
        .bind(o.balance_id)
        .bind(o.balance_key)
        .bind(o.chart_of_accounts)
        .bind(o.organization_id)
        .bind(o.ledger_id)
        .bind(o.route)
        .bind(o.route_id)
        .bind(o.route_code)
        .bind(o.route_description)
        .bind(o.direction)
        .bind(o.balance_affected)
        .bind(o.snapshot)
        .bind(o.created_at)
        .bind(o.updated_at)
        .bind(o.deleted_at);
    let returned: Returned = deadline
        .call("the bulk statement", query.fetch_one(executor))
        .await?;
    let (inserted, inserted_transitions, updated, conflicts, ops_inserted, ops_of_conflicts) = (
        returned.0, returned.1, returned.2, returned.3, returned.4, returned.5,
    );
    Ok(Outcome {
        inserted: inserted as u64,
        inserted_transitions: inserted_transitions as u64,
        updated: updated as u64,
        conflicts: conflicts.unwrap_or_default(),
        operations_inserted: ops_inserted as u64,
        operations_of_conflicts: ops_of_conflicts as u64,
        writer: Some(commit::Writer {
            xid: returned.6,
            backend_pid: returned.7,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn a_bulk_within_the_limit_is_one_statement() {
        assert_eq!(plan(50, 250, 1000), vec![(0..50, 0..250)]);
        assert_eq!(plan(2, 10, 10), vec![(0..2, 0..10)]);
    }

    #[test]
    fn one_row_above_the_limit_adds_one_statement() {
        assert_eq!(plan(2, 11, 10), vec![(0..2, 0..10), (0..0, 10..11)]);
        assert_eq!(plan(11, 0, 10), vec![(0..10, 0..0), (10..11, 0..0)]);
    }

    #[test]
    fn transactions_always_precede_their_operations() {
        let chunks = plan(25, 30, 10);
        assert_eq!(
            chunks,
            vec![
                (0..10, 0..0),
                (10..20, 0..0),
                (20..25, 0..10),
                (0..0, 10..20),
                (0..0, 20..30)
            ]
        );
    }
}
