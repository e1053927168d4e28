//! What the ledger's own consumer does around each message besides writing rows, that a
//! recorder replacing it must do too: acknowledge its Redis backup ([`backup`]).

pub mod backup;
mod redis_client;

use std::sync::Arc;

/// The ledger's bookkeeping after a commit, when configured (`REDIS_URL`).
pub type LedgerSide = Option<Arc<backup::Cleanup>>;
