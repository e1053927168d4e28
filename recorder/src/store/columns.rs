//! Rows as one array per column, borrowing the decoded messages: what `unnest` expands.
//!
//! Decimals and JSON travel as text and are cast by PostgreSQL, so any precision and any
//! document reaches the table exactly as decoded.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{json, merge::Row, text};
use crate::message::Operation;

/// The `transaction` rows.
#[derive(Default)]
pub struct TransactionColumns<'a> {
    pub id: Vec<Uuid>,
    pub parent_transaction_id: Vec<Option<Uuid>>,
    pub description: Vec<&'a str>,
    pub status: Vec<&'a str>,
    pub status_description: Vec<Option<&'a str>>,
    pub amount: Vec<Option<&'a str>>,
    pub asset_code: Vec<&'a str>,
    pub chart_of_accounts_group_name: Vec<&'a str>,
    pub ledger_id: Vec<Uuid>,
    pub organization_id: Vec<Uuid>,
    pub body: Vec<Option<&'a str>>,
    pub route: Vec<Option<&'a str>>,
    pub route_id: Vec<Option<Uuid>>,
    pub fees_skipped: Vec<bool>,
    pub tracer_skipped: Vec<bool>,
    pub created_at: Vec<DateTime<Utc>>,
    pub updated_at: Vec<Option<DateTime<Utc>>>,
    pub deleted_at: Vec<Option<DateTime<Utc>>>,
    /// A PENDING transaction and its final status were both in the bulk (for the counts).
    pub transition: Vec<bool>,
}

impl<'a> TransactionColumns<'a> {
    pub fn new(rows: &[Row<'a>]) -> Self {
        let n = rows.len();
        let mut c = Self {
            id: Vec::with_capacity(n),
            ..Default::default()
        };
        for row in rows {
            let (t, state) = (row.content, row.state);
            c.id.push(t.id);
            c.parent_transaction_id.push(t.parent_transaction_id);
            c.description.push(&t.description);
            c.status.push(&state.status.code);
            c.status_description
                .push(state.status.description.as_deref());
            c.amount.push(text(t.amount.as_ref()));
            c.asset_code.push(&t.asset_code);
            c.chart_of_accounts_group_name
                .push(&t.chart_of_accounts_group_name);
            c.ledger_id.push(t.ledger_id);
            c.organization_id.push(t.organization_id);
            c.body.push(json(t.body.as_ref()));
            c.route.push(t.route.as_deref());
            c.route_id.push(t.route_id);
            c.fees_skipped.push(t.fees_skipped);
            c.tracer_skipped.push(t.tracer_skipped);
            c.created_at.push(t.created_at);
            c.updated_at.push(state.updated_at);
            c.deleted_at.push(t.deleted_at);
            c.transition.push(row.transition);
        }
        c
    }
}

/// The `operation` rows.
#[derive(Default)]
pub struct OperationColumns<'a> {
    pub id: Vec<Uuid>,
    pub transaction_id: Vec<Uuid>,
    pub description: Vec<&'a str>,
    pub kind: Vec<&'a str>,
    pub asset_code: Vec<&'a str>,
    pub amount: Vec<Option<&'a str>>,
    pub available_balance: Vec<Option<&'a str>>,
    pub on_hold_balance: Vec<Option<&'a str>>,
    pub available_balance_after: Vec<Option<&'a str>>,
    pub on_hold_balance_after: Vec<Option<&'a str>>,
    pub balance_version_before: Vec<Option<i64>>,
    pub balance_version_after: Vec<Option<i64>>,
    pub status: Vec<&'a str>,
    pub status_description: Vec<Option<&'a str>>,
    pub account_id: Vec<Uuid>,
    pub account_alias: Vec<&'a str>,
    pub balance_id: Vec<Uuid>,
    pub balance_key: Vec<Option<&'a str>>,
    pub chart_of_accounts: Vec<&'a str>,
    pub organization_id: Vec<Uuid>,
    pub ledger_id: Vec<Uuid>,
    pub route: Vec<Option<&'a str>>,
    pub route_id: Vec<Option<Uuid>>,
    pub route_code: Vec<Option<&'a str>>,
    pub route_description: Vec<Option<&'a str>>,
    pub direction: Vec<Option<&'a str>>,
    pub balance_affected: Vec<Option<bool>>,
    pub snapshot: Vec<Option<&'a str>>,
    pub created_at: Vec<DateTime<Utc>>,
    pub updated_at: Vec<Option<DateTime<Utc>>>,
    pub deleted_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> OperationColumns<'a> {
    pub fn new(rows: &[&'a Operation]) -> Self {
        let mut c = Self {
            id: Vec::with_capacity(rows.len()),
            ..Default::default()
        };
        for o in rows {
            let before = o.balance.as_ref();
            let after = o.balance_after.as_ref();
            c.id.push(o.id);
            c.transaction_id.push(o.transaction_id);
            c.description.push(&o.description);
            c.kind.push(&o.kind);
            c.asset_code.push(&o.asset_code);
            c.amount
                .push(text(o.amount.as_ref().and_then(|a| a.value.as_ref())));
            c.available_balance
                .push(text(before.and_then(|b| b.available.as_ref())));
            c.on_hold_balance
                .push(text(before.and_then(|b| b.on_hold.as_ref())));
            c.available_balance_after
                .push(text(after.and_then(|b| b.available.as_ref())));
            c.on_hold_balance_after
                .push(text(after.and_then(|b| b.on_hold.as_ref())));
            c.balance_version_before
                .push(before.and_then(|b| b.version));
            c.balance_version_after.push(after.and_then(|b| b.version));
            c.status.push(&o.status.code);
            c.status_description.push(o.status.description.as_deref());
            c.account_id.push(o.account_id);
            c.account_alias.push(&o.account_alias);
            c.balance_id.push(o.balance_id);
            c.balance_key.push(o.balance_key.as_deref());
            c.chart_of_accounts.push(&o.chart_of_accounts);
            c.organization_id.push(o.organization_id);
            c.ledger_id.push(o.ledger_id);
            c.route.push(o.route.as_deref());
            c.route_id.push(o.route_id);
            c.route_code.push(o.route_code.as_deref());
            c.route_description.push(o.route_description.as_deref());
            c.direction.push(o.direction.as_deref());
            c.balance_affected.push(o.balance_affected);
            c.snapshot.push(json(o.snapshot.as_ref()));
            c.created_at.push(o.created_at);
            c.updated_at.push(o.updated_at);
            c.deleted_at.push(o.deleted_at);
        }
        c
    }
}
