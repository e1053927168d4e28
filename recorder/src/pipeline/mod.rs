//! From deliveries to committed, settled bulks: [`collector`] gathers bulks, [`flush`] writes
//! each one and decides the fate of its messages (with [`retry`]), [`after_commit`] leaves what
//! the ledger's consumer leaves besides rows (under the one [`policy`] for retries, holds and
//! shutdown), [`parents`] holds messages whose parent is not stored yet, [`session`] runs one
//! broker connection and settles bulks in order, [`recorder`] reconnects both sides until
//! shutdown.

pub mod after_commit;
pub mod collector;
pub mod flush;
pub mod parents;
pub mod policy;
pub mod recorder;
pub mod retry;
pub mod session;
