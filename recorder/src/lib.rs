//! bulk-recorder: persists ledger transactions from RabbitMQ into PostgreSQL in bulk.
//!
//! The path of a message: [`consumer`] decodes it on its channel's task, [`collector`] gathers
//! bulks, [`flush`] writes them with [`writer`] (or [`one_by_one`], the baseline) and decides
//! each message's fate, and [`session`] settles bulks with the broker in order.

pub mod backoff;
pub mod broker;
pub mod collector;
pub mod config;
pub mod consumer;
pub mod counts;
pub mod db;
pub mod decimal;
pub mod flush;
pub mod health;
pub mod http;
pub mod message;
pub mod metrics;
pub mod one_by_one;
pub mod publish;
pub mod recorder;
pub mod session;
pub mod status_report;
pub mod writer;
