//! Writing transactions into PostgreSQL: in bulk ([`bulk`]) or one row per statement
//! ([`one_by_one`], the baseline), with the same rules, the same columns ([`columns`]) and the
//! same commit protocol ([`txn`]: nothing is reported written before it is durable as the
//! server is configured).
//!
//! Layering, leaves first: `errors`, `deadline`, `columns` -> `sql`, `plan`, `merge` ->
//! `db`, `durability`, `resolve`, `privileges` -> `txn` -> `copy`, `upsert` -> `bulk`, `one_by_one`.

pub mod bulk;
pub mod columns;
mod copy;
pub mod db;
pub mod deadline;
pub mod durability;
pub mod errors;
pub mod merge;
pub mod one_by_one;
mod plan;
pub mod privileges;
pub mod resolve;
mod sql;
pub mod txn;
mod upsert;

use crate::{message::Transaction, telemetry::counts::WriteCounts};

pub use bulk::BulkWriter;
pub use db::Database;
pub use errors::WriteError;
pub use one_by_one::OneByOneWriter;

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub counts: WriteCounts,
    /// Statements sent (BEGIN/COMMIT not included).
    pub statements: u64,
    /// Transactions found stored with other content: their messages changed nothing (and
    /// leave nothing else behind: no metadata, no event).
    pub conflicting: Vec<uuid::Uuid>,
}

/// How messages are written.
#[derive(Clone)]
pub enum Writer {
    /// All messages of a bulk in one database transaction of one or two statements.
    Bulk(BulkWriter),
    /// One statement per row, one database transaction per message: the baseline.
    OneByOne(OneByOneWriter),
}

impl Writer {
    /// Writes the rows of `transactions` and returns what was committed.
    pub async fn write(&self, transactions: &[&Transaction]) -> Result<Written, WriteError> {
        match self {
            Writer::Bulk(writer) => writer.write(transactions).await,
            Writer::OneByOne(writer) => {
                let mut total = Written::default();
                for transaction in transactions {
                    let written = writer.write(transaction).await?;
                    total.counts += written.counts;
                    total.statements += written.statements;
                    total.conflicting.extend(written.conflicting);
                }
                Ok(total)
            }
        }
    }
}
