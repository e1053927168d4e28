//! What the ledger's own consumer does around each message besides writing rows, that a
//! recorder replacing it does too: its metadata in its document store ([`metadata`]), its
//! events ([`events`], bodies in [`event_body`] written as Go writes JSON, [`go_json`]), and its
//! Redis backup acknowledged ([`backup`]). They run after each commit, in the one after-commit
//! stage ([`crate::pipeline::after_commit`]).

pub mod backup;
pub mod event_body;
pub mod events;
pub mod go_json;
pub mod metadata;
mod redis_client;
