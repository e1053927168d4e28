//! bulk-recorder: persists ledger transactions from RabbitMQ into PostgreSQL in bulk.
//!
//! The path of a message: [`consumer`] decodes it ([`message`]) on its channel's task,
//! [`collector`] gathers bulks, [`flush`] writes them with a [`store::Writer`] and decides each
//! message's fate, and [`session`] settles bulks with the broker in order.

pub mod backoff;
pub mod broker;
pub mod collector;
pub mod config;
pub mod connection_url;
pub mod consumer;
pub mod counts;
pub mod db;
pub mod flush;
pub mod health;
pub mod http;
pub mod message;
pub mod metrics;
pub mod publish;
pub mod recorder;
pub mod session;
pub mod startup;
pub mod status_report;
pub mod store;
