//! Row counters: what a bulk tried to write, what PostgreSQL actually wrote, and what it skipped.

use std::ops::AddAssign;

/// Counts for one table: every attempted row is exactly one of inserted, updated,
/// conflicting or ignored.
///
/// - `inserted`: a new row was written;
/// - `updated`: a stored PENDING transaction moved to a final status (transactions only);
/// - `conflicting`: the id was stored with other content and the message is no valid
///   transition, so the stored row was kept (a producer reusing ids);
/// - `ignored`: the row was already stored as sent (a redelivery, a duplicate in the same bulk,
///   a repeated transition).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowCounts {
    pub attempted: u64,
    pub inserted: u64,
    pub ignored: u64,
    #[serde(default)]
    pub updated: u64,
    #[serde(default)]
    pub conflicting: u64,
}

impl RowCounts {
    /// Counts for `attempted` rows of which `inserted` were written and the rest ignored.
    pub fn new(attempted: u64, inserted: u64) -> Self {
        Self::with(attempted, inserted, 0, 0)
    }

    /// Counts for `attempted` rows; what is neither inserted, updated nor conflicting was
    /// ignored.
    pub fn with(attempted: u64, inserted: u64, updated: u64, conflicting: u64) -> Self {
        let settled = inserted + updated + conflicting;
        debug_assert!(
            settled <= attempted,
            "inserted {inserted} + updated {updated} + conflicting {conflicting} > attempted {attempted}"
        );
        Self {
            attempted,
            inserted,
            ignored: attempted.saturating_sub(settled),
            updated,
            conflicting,
        }
    }
}

impl AddAssign for RowCounts {
    fn add_assign(&mut self, rhs: Self) {
        self.attempted += rhs.attempted;
        self.inserted += rhs.inserted;
        self.ignored += rhs.ignored;
        self.updated += rhs.updated;
        self.conflicting += rhs.conflicting;
    }
}

/// Counts for both tables, for one bulk or cumulated over a process's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriteCounts {
    pub transactions: RowCounts,
    pub operations: RowCounts,
}

impl AddAssign for WriteCounts {
    fn add_assign(&mut self, rhs: Self) {
        self.transactions += rhs.transactions;
        self.operations += rhs.operations;
    }
}
