//! Why a write failed, which decides what becomes of the messages it carried.
//!
//! PostgreSQL says why by SQLSTATE. Three kinds matter here:
//! - the rows' fault (classes 22, 23 and 54: a value, a constraint, a row too large for an
//!   index): the same rows will fail again, so the bulk is split and the message to blame is
//!   dead-lettered with the error;
//! - the database's state (a connection, a lock, a shutdown, a full disk, a missing table or
//!   privilege, a serialization failure): the same rows will pass later, so the bulk is held and
//!   retried, never dead-lettered;
//! - anything else the server answers (a statement timeout, a trigger's exception, an internal
//!   error): it may be the rows or the server. Retried like the second kind, but a bulk that keeps
//!   failing with the same SQLSTATE is split (`suspect_code`), so that a bulk too slow for the
//!   statement timeout or holding one row a trigger refuses cannot hold the queue forever.

use std::time::Duration;

/// `unique_violation`: a row that is stored already (what stops a `COPY`).
pub const UNIQUE_VIOLATION: &str = "23505";
/// `foreign_key_violation`: on `transaction`, a parent that is not stored (yet).
const FOREIGN_KEY_VIOLATION: &str = "23503";

/// Classes of SQLSTATE that are the rows' fault.
const DATA_CLASSES: [&str; 3] = ["22", "23", "54"];

/// Classes and codes that describe the database's state, whatever the rows: retried as they are.
const STATE_CLASSES: [&str; 11] = [
    "08",  // connection exception
    "25",  // invalid transaction state (an idle session timed out)
    "28",  // authorization
    "3D",  // database missing
    "40",  // serialization failure, deadlock
    "42",  // a missing table or column, a privilege (fix the database, then it passes)
    "53",  // insufficient resources: disk full, out of memory, too many connections
    "55",  // lock not available, object in use
    "57P", // admin shutdown, crash shutdown, cannot connect now
    "58",  // system error (I/O)
    "F0",  // configuration file error
];

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The rows themselves were refused: the same rows cannot pass.
    #[error("rows refused by PostgreSQL: {0}")]
    Data(#[source] sqlx::Error),
    /// The database could not take the write now: the same rows may pass later.
    #[error("database unavailable: {0}")]
    Transient(#[source] sqlx::Error),
    /// No answer in time (a stalled server, a half-open connection): the connection is
    /// dropped and the write retried.
    #[error("no answer from PostgreSQL within {0:?} ({1})")]
    TimedOut(Duration, &'static str),
    /// The server changed (a failover, a restart) before the write was known to be durable, and
    /// the one answering now does not have its rows: the write is retried there.
    #[error(
        "the database server changed (a failover or a restart) before the write was known to be \
         durable, and the new one does not have its rows"
    )]
    ServerChanged,
    /// Shutdown began before the write's fate was known (its COMMIT unanswered, or committed
    /// but not yet on the synchronous standbys): its messages go back to the queue.
    #[error("shutting down before the write was known to be durable: {0}")]
    Unresolved(&'static str),
}

impl WriteError {
    pub fn classify(error: sqlx::Error) -> Self {
        let is_data = match &error {
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| in_classes(&code, &DATA_CLASSES)),
            sqlx::Error::Encode(_) => true,
            _ => false,
        };
        if is_data {
            WriteError::Data(error)
        } else {
            WriteError::Transient(error)
        }
    }

    pub fn is_data(&self) -> bool {
        matches!(self, WriteError::Data(_))
    }

    /// The SQLSTATE of an answer that may be the rows' fault as well as the server's: a bulk
    /// failing with it again and again is split. `None` for the database's state and for
    /// failures without an answer.
    pub fn suspect_code(&self) -> Option<String> {
        match self {
            WriteError::Transient(sqlx::Error::Database(db)) => db
                .code()
                .filter(|code| !in_classes(code, &STATE_CLASSES))
                .map(|code| code.into_owned()),
            _ => None,
        }
    }

    /// A row that is stored already (`unique_violation`).
    pub fn is_duplicate(&self) -> bool {
        self.data_code().as_deref() == Some(UNIQUE_VIOLATION)
    }

    /// A transaction whose parent (`parent_transaction_id`) is not stored: the only foreign key
    /// of the `transaction` table. It may be in a bulk that has not committed yet.
    pub fn is_missing_parent(&self) -> bool {
        match self {
            WriteError::Data(sqlx::Error::Database(db)) => {
                db.code().as_deref() == Some(FOREIGN_KEY_VIOLATION)
                    && db.table() == Some("transaction")
            }
            _ => false,
        }
    }

    /// Whether a failed COMMIT certainly did not commit: PostgreSQL refused it before writing
    /// its commit record (a deferred constraint, a serialization failure, a deadlock). Any
    /// other failure (a lost connection, an administrator's shutdown) may come after the commit
    /// record, so the outcome must be asked.
    pub fn refused_commit(&self) -> bool {
        match self {
            WriteError::Data(_) => true,
            WriteError::Transient(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|code| code.starts_with("40"))
            }
            _ => false,
        }
    }

    fn data_code(&self) -> Option<String> {
        match self {
            WriteError::Data(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

fn in_classes(code: &str, classes: &[&str]) -> bool {
    classes.iter().any(|class| code.starts_with(class))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_fault_the_databases_state_and_the_rest() {
        assert!(in_classes("54000", &DATA_CLASSES), "an index row too large");
        assert!(in_classes("22P02", &DATA_CLASSES) && in_classes("23503", &DATA_CLASSES));
        for state in [
            "08006", "55P03", "57P01", "40P01", "42P01", "53100", "25P03",
        ] {
            assert!(in_classes(state, &STATE_CLASSES), "{state}");
        }
        for suspect in ["57014", "P0001", "XX000"] {
            assert!(!in_classes(suspect, &STATE_CLASSES), "{suspect}");
            assert!(!in_classes(suspect, &DATA_CLASSES), "{suspect}");
        }
    }
}
