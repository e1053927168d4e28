//! Row counters: what a bulk tried to write, what PostgreSQL actually wrote, and what it skipped.

use std::ops::AddAssign;

/// Counts for one table. `ignored = attempted - inserted`: rows whose id already existed,
/// including duplicates of another row in the same bulk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowCounts {
    pub attempted: u64,
    pub inserted: u64,
    pub ignored: u64,
}

impl RowCounts {
    /// Counts for `attempted` rows of which `inserted` were written.
    pub fn new(attempted: u64, inserted: u64) -> Self {
        debug_assert!(
            inserted <= attempted,
            "inserted {inserted} > attempted {attempted}"
        );
        Self {
            attempted,
            inserted,
            ignored: attempted.saturating_sub(inserted),
        }
    }
}

impl AddAssign for RowCounts {
    fn add_assign(&mut self, rhs: Self) {
        self.attempted += rhs.attempted;
        self.inserted += rhs.inserted;
        self.ignored += rhs.ignored;
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
