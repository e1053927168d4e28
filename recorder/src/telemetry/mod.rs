//! What the recorder tells people and machines: row [`counts`], Prometheus [`metrics`],
//! [`health`] and the HTTP endpoints that serve them ([`http`]).

pub mod counts;
pub mod health;
pub mod http;
pub mod metrics;
