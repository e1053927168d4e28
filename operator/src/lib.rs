//! bulk-recorder-operator: reconciles `BulkRecorder` resources into recorder Deployments and
//! reports their readiness and counts in the resource's status.
//!
//! [`desired`] builds the owned objects (pure), [`apply`] writes only what differs,
//! [`fold`] keeps the counts exact when recorders come and go, [`conditions`] explains the
//! state to people, and [`reconcile`] ties them together for the kube-runtime controller.

pub mod apply;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod desired;
pub mod fold;
pub mod http;
pub mod metrics;
pub mod rbac;
pub mod reconcile;

#[cfg(feature = "fake-api")]
pub mod fake_api;
#[cfg(test)]
pub mod fixtures;
#[cfg(test)]
mod reconcile_tests;
