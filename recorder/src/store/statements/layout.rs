//! The columns the tables have, read once at start-up: the ledger's v4.0.0-beta.11 columns,
//! which every statement writes, and those of its later migrations (all nullable) that the
//! tables were given: `operation.recorded_at`, `transaction.group_id`, `scheme`,
//! `operational_type_code`, `applied_exception_id`. A column the tables have is written as the
//! ledger writes it; one they do not have is left out of every statement, never an error. A
//! column added while the recorder runs is written after its next start (a rolling restart
//! after the ledger's migration).

use std::collections::HashSet;

use sqlx::PgPool;

use super::{
    columns::{
        Columns, OPERATION, OPERATION_LATER, OperationColumn, TRANSACTION, TRANSACTION_LATER,
        TransactionColumn,
    },
    sql::Statements,
};

/// The columns the statements write, and the statements.
pub struct Layout {
    pub transaction: Columns<TransactionColumn>,
    pub operation: Columns<OperationColumn>,
    pub statements: Statements,
}

/// The columns of `transaction` and `operation`, as the statements resolve those names (the
/// role's `search_path`).
const COLUMNS: &str = "SELECT c.relname::text, a.attname::text FROM pg_attribute a \
    JOIN pg_class c ON c.oid = a.attrelid \
    WHERE a.attrelid IN (to_regclass('transaction'), to_regclass('operation')) \
    AND a.attnum > 0 AND NOT a.attisdropped";

impl Layout {
    /// The ledger's v4.0.0-beta.11 columns only: what the recorder's own migrations make.
    pub fn base() -> Self {
        Self::with(&HashSet::new(), &HashSet::new())
    }

    /// The base columns, and the later ones among `transaction` and `operation` (column names).
    pub fn with(transaction: &HashSet<String>, operation: &HashSet<String>) -> Self {
        let transaction: Columns<TransactionColumn> = TRANSACTION
            .iter()
            .chain(
                TRANSACTION_LATER
                    .iter()
                    .filter(|c| transaction.contains(c.name)),
            )
            .collect();
        let operation: Columns<OperationColumn> = OPERATION
            .iter()
            .chain(
                OPERATION_LATER
                    .iter()
                    .filter(|c| operation.contains(c.name)),
            )
            .collect();
        let statements = Statements::new(&transaction, &operation);
        Self {
            transaction,
            operation,
            statements,
        }
    }

    /// Reads the tables' columns.
    pub async fn read(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String, String)> = sqlx::query_as(COLUMNS).fetch_all(pool).await?;
        let of = |table: &str| -> HashSet<String> {
            rows.iter()
                .filter(|(t, _)| t == table)
                .map(|(_, column)| column.clone())
                .collect()
        };
        Ok(Self::with(&of("transaction"), &of("operation")))
    }

    /// The later columns written (`table.column`), for the log.
    pub fn later_columns(&self) -> Vec<String> {
        let transaction = self.transaction[TRANSACTION.len()..]
            .iter()
            .map(|c| format!("transaction.{}", c.name));
        let operation = self.operation[OPERATION.len()..]
            .iter()
            .map(|c| format!("operation.{}", c.name));
        transaction.chain(operation).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_the_later_columns_the_tables_have_are_written() {
        assert!(Layout::base().later_columns().is_empty());
        let some = Layout::with(&names(&["id", "scheme"]), &names(&["id", "recorded_at"]));
        assert_eq!(
            some.later_columns(),
            ["transaction.scheme", "operation.recorded_at"]
        );
        assert_eq!(some.transaction.len(), TRANSACTION.len() + 1);
        assert!(some.statements.copy_operations.contains("recorded_at"));
        assert!(!some.statements.bulk_upsert.contains("group_id"));
    }
}
