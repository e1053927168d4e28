//! What the recorder tells people and machines: row [`counts`], Prometheus [`metrics`],
//! [`health`] and the HTTP endpoints that serve them ([`http`]), and the counts it reports
//! into its BulkRecorder's status when it runs in a cluster ([`status_report`]), and its traces
//! ([`traces`], exported over OTLP by [`otlp`]).

pub mod counts;
pub mod health;
pub mod http;
pub mod metric_table;
pub mod metrics;
mod otlp;
pub mod status_report;
pub mod traces;
