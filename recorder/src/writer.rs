//! The bulk write: every transaction and operation of a bulk in one statement.
//!
//! Rows travel as one array per column and are expanded by `unnest`, so the statement text is
//! the same for every bulk (prepared once per connection) and binds 43 parameters whatever the
//! bulk holds. A data-modifying CTE inserts both tables at once; the foreign key from
//! `operation` to `transaction` is checked at the end of the statement, when both are in.
//! Rows are sorted by id so that concurrent recorders lock index entries in the same order and
//! cannot deadlock, and de-duplicated so that a message delivered twice into one bulk is
//! counted as ignored rather than sent twice.

use std::time::Instant;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, Transaction as DbTransaction};
use uuid::Uuid;

use crate::{
    counts::{RowCounts, WriteCounts},
    db::WriteError,
    message::{Operation, Transaction},
};

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub counts: WriteCounts,
    /// INSERT statements sent (BEGIN/COMMIT not included).
    pub statements: u64,
}

const BULK_INSERT: &str = r#"
WITH t AS (
    INSERT INTO transaction (id, parent_transaction_id, description, status, status_description,
        amount, asset_code, chart_of_accounts_group_name, ledger_id, organization_id, route,
        route_id, created_at, updated_at, deleted_at)
    SELECT id, parent_transaction_id, description, status, status_description, amount,
        asset_code, chart_of_accounts_group_name, ledger_id, organization_id, route, route_id,
        created_at, COALESCE(updated_at, now()), deleted_at
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::numeric[],
        $7::text[], $8::text[], $9::uuid[], $10::uuid[], $11::text[], $12::uuid[],
        $13::timestamptz[], $14::timestamptz[], $15::timestamptz[])
        AS r(id, parent_transaction_id, description, status, status_description, amount,
        asset_code, chart_of_accounts_group_name, ledger_id, organization_id, route, route_id,
        created_at, updated_at, deleted_at)
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
), o AS (
    INSERT INTO operation (id, transaction_id, description, type, asset_code, amount,
        available_balance, on_hold_balance, available_balance_after, on_hold_balance_after,
        balance_version_before, balance_version_after, status, status_description, account_id,
        account_alias, balance_id, balance_key, chart_of_accounts, organization_id, ledger_id,
        route, route_id, direction, balance_affected, created_at, updated_at, deleted_at)
    SELECT id, transaction_id, description, type, asset_code, amount, available_balance,
        on_hold_balance, available_balance_after, on_hold_balance_after,
        COALESCE(balance_version_before, 0), COALESCE(balance_version_after, 0), status,
        status_description, account_id, account_alias, balance_id,
        COALESCE(balance_key, 'default'), chart_of_accounts, organization_id, ledger_id, route,
        route_id, direction, COALESCE(balance_affected, true), created_at,
        COALESCE(updated_at, now()), deleted_at
    FROM unnest($16::uuid[], $17::uuid[], $18::text[], $19::text[], $20::text[],
        $21::numeric[], $22::numeric[], $23::numeric[], $24::numeric[], $25::numeric[],
        $26::int8[], $27::int8[], $28::text[], $29::text[], $30::uuid[], $31::text[],
        $32::uuid[], $33::text[], $34::text[], $35::uuid[], $36::uuid[], $37::text[],
        $38::uuid[], $39::text[], $40::bool[], $41::timestamptz[], $42::timestamptz[],
        $43::timestamptz[])
        AS r(id, transaction_id, description, type, asset_code, amount, available_balance,
        on_hold_balance, available_balance_after, on_hold_balance_after,
        balance_version_before, balance_version_after, status, status_description,
        account_id, account_alias, balance_id, balance_key, chart_of_accounts,
        organization_id, ledger_id, route, route_id, direction, balance_affected, created_at,
        updated_at, deleted_at)
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM o)
"#;

/// Writes bulks of transactions.
#[derive(Clone)]
pub struct BulkWriter {
    pool: PgPool,
    max_rows_per_insert: usize,
}

impl BulkWriter {
    pub fn new(pool: PgPool, max_rows_per_insert: usize) -> Self {
        assert!(
            max_rows_per_insert > 0,
            "max_rows_per_insert must be positive"
        );
        Self {
            pool,
            max_rows_per_insert,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes all rows of `transactions` atomically: all of them are committed, or none.
    pub async fn write(&self, transactions: &[&Transaction]) -> Result<Written, WriteError> {
        let started = Instant::now();
        let mut txns: Vec<&Transaction> = transactions.to_vec();
        txns.sort_unstable_by_key(|t| t.id);
        txns.dedup_by_key(|t| t.id);
        let mut ops: Vec<&Operation> = txns.iter().flat_map(|t| &t.operations).collect();
        let attempted_ops: u64 = transactions.iter().map(|t| t.operations.len() as u64).sum();
        ops.sort_unstable_by_key(|o| o.id);
        ops.dedup_by_key(|o| o.id);

        let statements = plan(txns.len(), ops.len(), self.max_rows_per_insert);
        let (inserted_txns, inserted_ops) = if statements.len() == 1 {
            // One statement is atomic on its own: no BEGIN/COMMIT round-trips.
            let mut conn = self.pool.acquire().await.map_err(WriteError::classify)?;
            insert(&mut *conn, &txns, &ops).await?
        } else {
            let mut db = self.pool.begin().await.map_err(WriteError::classify)?;
            let totals = insert_chunks(&mut db, &statements, &txns, &ops).await?;
            db.commit().await.map_err(WriteError::classify)?;
            totals
        };
        tracing::debug!(
            transactions = txns.len(),
            operations = ops.len(),
            statements = statements.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "bulk written"
        );
        Ok(Written {
            counts: WriteCounts {
                transactions: RowCounts::new(transactions.len() as u64, inserted_txns),
                operations: RowCounts::new(attempted_ops, inserted_ops),
            },
            statements: statements.len() as u64,
        })
    }
}

/// One statement's share of the sorted rows: a range of transactions and one of operations.
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

async fn insert_chunks(
    db: &mut DbTransaction<'_, Postgres>,
    chunks: &[Chunk],
    txns: &[&Transaction],
    ops: &[&Operation],
) -> Result<(u64, u64), WriteError> {
    let mut totals = (0, 0);
    for (t, o) in chunks {
        let (it, io) = insert(&mut **db, &txns[t.clone()], &ops[o.clone()]).await?;
        totals.0 += it;
        totals.1 += io;
    }
    Ok(totals)
}

/// Sends one statement; returns the rows inserted into each table.
async fn insert<'c, E>(
    executor: E,
    txns: &[&Transaction],
    ops: &[&Operation],
) -> Result<(u64, u64), WriteError>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let t = TransactionColumns::from(txns);
    let o = OperationColumns::from(ops);
    let (inserted_txns, inserted_ops): (i64, i64) = sqlx::query_as(BULK_INSERT)
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
        .bind(t.route)
        .bind(t.route_id)
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.deleted_at)
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
        .bind(o.direction)
        .bind(o.balance_affected)
        .bind(o.created_at)
        .bind(o.updated_at)
        .bind(o.deleted_at)
        .fetch_one(executor)
        .await
        .map_err(WriteError::classify)?;
    Ok((inserted_txns as u64, inserted_ops as u64))
}

/// The `transaction` rows as one array per column, borrowing the decoded messages.
#[derive(Default)]
struct TransactionColumns<'a> {
    id: Vec<Uuid>,
    parent_transaction_id: Vec<Option<Uuid>>,
    description: Vec<&'a str>,
    status: Vec<&'a str>,
    status_description: Vec<Option<&'a str>>,
    amount: Vec<Option<Decimal>>,
    asset_code: Vec<&'a str>,
    chart_of_accounts_group_name: Vec<&'a str>,
    ledger_id: Vec<Uuid>,
    organization_id: Vec<Uuid>,
    route: Vec<Option<&'a str>>,
    route_id: Vec<Option<Uuid>>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<Option<DateTime<Utc>>>,
    deleted_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> From<&[&'a Transaction]> for TransactionColumns<'a> {
    fn from(rows: &[&'a Transaction]) -> Self {
        let mut c = Self::default();
        for t in rows {
            c.id.push(t.id);
            c.parent_transaction_id.push(t.parent_transaction_id);
            c.description.push(&t.description);
            c.status.push(&t.status.code);
            c.status_description.push(t.status.description.as_deref());
            c.amount.push(t.amount);
            c.asset_code.push(&t.asset_code);
            c.chart_of_accounts_group_name
                .push(&t.chart_of_accounts_group_name);
            c.ledger_id.push(t.ledger_id);
            c.organization_id.push(t.organization_id);
            c.route.push(t.route.as_deref());
            c.route_id.push(t.route_id);
            c.created_at.push(t.created_at);
            c.updated_at.push(t.updated_at);
            c.deleted_at.push(t.deleted_at);
        }
        c
    }
}

/// The `operation` rows as one array per column, borrowing the decoded messages.
#[derive(Default)]
struct OperationColumns<'a> {
    id: Vec<Uuid>,
    transaction_id: Vec<Uuid>,
    description: Vec<&'a str>,
    kind: Vec<&'a str>,
    asset_code: Vec<&'a str>,
    amount: Vec<Option<Decimal>>,
    available_balance: Vec<Option<Decimal>>,
    on_hold_balance: Vec<Option<Decimal>>,
    available_balance_after: Vec<Option<Decimal>>,
    on_hold_balance_after: Vec<Option<Decimal>>,
    balance_version_before: Vec<Option<i64>>,
    balance_version_after: Vec<Option<i64>>,
    status: Vec<&'a str>,
    status_description: Vec<Option<&'a str>>,
    account_id: Vec<Uuid>,
    account_alias: Vec<&'a str>,
    balance_id: Vec<Uuid>,
    balance_key: Vec<Option<&'a str>>,
    chart_of_accounts: Vec<&'a str>,
    organization_id: Vec<Uuid>,
    ledger_id: Vec<Uuid>,
    route: Vec<Option<&'a str>>,
    route_id: Vec<Option<Uuid>>,
    direction: Vec<Option<&'a str>>,
    balance_affected: Vec<Option<bool>>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<Option<DateTime<Utc>>>,
    deleted_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> From<&[&'a Operation]> for OperationColumns<'a> {
    fn from(rows: &[&'a Operation]) -> Self {
        let mut c = Self::default();
        for o in rows {
            let before = o.balance.as_ref();
            let after = o.balance_after.as_ref();
            c.id.push(o.id);
            c.transaction_id.push(o.transaction_id);
            c.description.push(&o.description);
            c.kind.push(&o.kind);
            c.asset_code.push(&o.asset_code);
            c.amount.push(o.amount.as_ref().and_then(|a| a.value));
            c.available_balance.push(before.and_then(|b| b.available));
            c.on_hold_balance.push(before.and_then(|b| b.on_hold));
            c.available_balance_after
                .push(after.and_then(|b| b.available));
            c.on_hold_balance_after.push(after.and_then(|b| b.on_hold));
            c.balance_version_before
                .push(before.and_then(|b| b.version));
            c.balance_version_after.push(after.and_then(|b| b.version));
            c.status.push(&o.status.code);
            c.status_description.push(o.status.description.as_deref());
            c.account_id.push(o.account_id);
            c.account_alias.push(&o.account_alias);
            c.balance_id.push(o.balance_id);
            c.balance_key.push(o.balance_key.as_deref());
            c.chart_of_accounts.push(&o.chart_of_accounts);
            c.organization_id.push(o.organization_id);
            c.ledger_id.push(o.ledger_id);
            c.route.push(o.route.as_deref());
            c.route_id.push(o.route_id);
            c.direction.push(o.direction.as_deref());
            c.balance_affected.push(o.balance_affected);
            c.created_at.push(o.created_at);
            c.updated_at.push(o.updated_at);
            c.deleted_at.push(o.deleted_at);
        }
        c
    }
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
