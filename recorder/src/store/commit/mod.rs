//! The commit protocol: one database transaction per write ([`txn`]), every round-trip within
//! one [`deadline`], a COMMIT known durable as the server is configured ([`durability`]), a lost
//! COMMIT answer resolved ([`resolve`]), and why a write failed ([`errors`]).

pub mod deadline;
pub mod durability;
pub mod errors;
pub mod resolve;
pub mod txn;
