//! The statements of a write: the column tables ([`columns`]), the columns the tables have
//! ([`layout`]) and the statement text generated from them ([`sql`]), how a bulk is merged by transaction id ([`merge`]) and cut into
//! statements ([`plan`]), the binary `COPY` ([`copy`]) and the upsert ([`upsert`]), and the two
//! writers built on them: the bulk write ([`bulk`]) and the one-row-per-statement baseline
//! ([`one_by_one`]).

pub mod bulk;
pub mod columns;
pub mod copy;
pub mod layout;
pub mod merge;
pub mod one_by_one;
mod plan;
pub mod sql;
mod upsert;
