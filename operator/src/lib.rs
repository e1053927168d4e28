//! bulk-recorder-operator: reconciles `BulkRecorder` resources into recorder Deployments and
//! reports their readiness and counts in the resource's status.
//!
//! [`desired`] builds the owned objects (pure), [`apply`] server-side-applies them (never taking
//! over objects it does not control) and deletes those no longer wanted, [`owned`] does that for
//! one resource's objects in order, [`monitoring`] for its PodMonitor (when [`discovery`] says
//! the Prometheus Operator's CRD is there), [`secrets`] reads the Secrets the spec names,
//! [`fold`] keeps the counts exact when recorders come and go, [`status`] writes the status,
//! [`conditions`] explains the state to people, [`reconcile`] ties them together, and
//! [`controller`] decides what triggers it, reading the cluster through [`stores`].

pub mod apply;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod desired;
pub mod discovery;
pub mod error;
pub mod events;
pub mod fold;
pub mod http;
pub mod metrics;
pub mod monitoring;
pub mod observed;
pub mod owned;
pub mod rbac;
pub mod reconcile;
pub mod secrets;
pub mod startup;
pub mod status;
pub mod stores;

#[cfg(feature = "fake-api")]
pub mod fake_api;
#[cfg(test)]
pub mod fixtures;
#[cfg(test)]
mod reconcile_tests;
