//! From deliveries to committed, settled bulks: [`collector`] gathers bulks, [`flush`] writes
//! each one and decides the fate of its messages, [`session`] runs one broker connection and
//! settles bulks in order, [`recorder`] reconnects both sides until shutdown.

pub mod collector;
pub mod flush;
pub mod recorder;
pub mod session;
