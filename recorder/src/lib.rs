//! bulk-recorder: persists ledger transactions from RabbitMQ into PostgreSQL in bulk.
//!
//! By stage: [`message`] (the formats a body may be in), [`broker`] (RabbitMQ: channels,
//! consumers decoding deliveries, settlement), [`pipeline`] (collecting bulks, writing them,
//! settling them in order, reconnecting), [`store`] (PostgreSQL: the bulk and one-by-one
//! writes), [`ledger`] (the ledger's own bookkeeping around its queue: its Redis backup),
//! [`telemetry`] (counts, metrics, health, reports to the cluster), and [`replay`] (moving
//! dead-lettered messages back).

pub mod backoff;
pub mod broker;
pub mod config;
#[cfg(test)]
mod docs_table;
pub mod ledger;
pub mod message;
pub mod pipeline;
pub mod replay;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
