//! Writing transactions into PostgreSQL: the connection and its session settings ([`db`]), what
//! the role needs ([`privileges`]), the statements of a write ([`statements`]: in bulk, or one
//! row per statement, the baseline, with the same rules and the same columns) and the commit
//! protocol they all end with ([`commit`]: nothing is reported written before it is durable as
//! the server is configured).
//!
//! Layering, leaves first: `commit::{errors, deadline}` -> `db` -> `commit::{durability,
//! resolve}`, `privileges` -> `commit::txn` -> `statements`.

pub mod commit;
pub mod db;
pub mod privileges;
pub mod statements;

use crate::{message::Transaction, telemetry::counts::WriteCounts};

pub use commit::errors::WriteError;
pub use db::Database;
pub use statements::{bulk::BulkWriter, one_by_one::OneByOneWriter};

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
