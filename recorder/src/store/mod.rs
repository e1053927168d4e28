//! Writing transactions into PostgreSQL: in bulk ([`bulk`]) or one row per statement
//! ([`one_by_one`], the baseline), with the same rules.

#[macro_use]
mod sql;
pub mod bulk;
mod columns;
pub mod commit;
mod copy;
pub mod db;
pub mod merge;
pub mod one_by_one;

use crate::{
    message::{Decimal, JsonText, Transaction},
    store::db::WriteError,
    telemetry::counts::WriteCounts,
};

pub use bulk::BulkWriter;
pub use one_by_one::OneByOneWriter;

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub counts: WriteCounts,
    /// Statements sent (BEGIN/COMMIT not included).
    pub statements: u64,
}

/// How messages are written.
#[derive(Clone)]
pub enum Writer {
    /// All messages of a bulk in one statement.
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
                }
                Ok(total)
            }
        }
    }
}

/// Decimals and JSON travel as text; PostgreSQL casts them, so nothing is rounded.
fn text(d: Option<&Decimal>) -> Option<&str> {
    d.map(Decimal::as_str)
}

fn json(j: Option<&JsonText>) -> Option<&str> {
    j.map(|j| j.0.as_str())
}
