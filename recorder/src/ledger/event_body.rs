//! The ledger's events, as its consumer builds them (`mmodel.Event` around the transaction it
//! persisted, or around an overdraft movement), in Go's JSON: the struct fields in declaration
//! order, `omitempty` where the ledger's structs say so, values as the message carried them
//! (routes and balance keys verbatim, times with their nanoseconds).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::go_json::GoJson;
use crate::message::{Balance, Decimal, Operation, Transaction};

/// The `balanceKey` of an overdraft balance.
const OVERDRAFT_BALANCE_KEY: &str = "overdraft";

/// Names the events' stable ids (UUIDv5): the same event of the same message always has the
/// same `message_id`, so that a consumer can drop the copies at-least-once delivery may make.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6275_6c6b_2d72_6563_6f72_6465_722d_6576);

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `transaction` or `overdraft` (the metric's label).
    pub kind: &'static str,
    pub routing_key: String,
    pub message_id: String,
    pub body: Vec<u8>,
}

impl Event {
    /// An event whose `message_id` is named by `identity` (what makes it this event).
    fn new(
        kind: &'static str,
        routing_key: String,
        identity: std::fmt::Arguments<'_>,
        json: GoJson,
    ) -> Self {
        Self {
            kind,
            routing_key,
            message_id: Uuid::new_v5(&EVENT_NAMESPACE, identity.to_string().as_bytes()).to_string(),
            body: json.out.into_bytes(),
        }
    }
}

/// The transaction event: routing key `midaz.transaction.<status>`.
pub fn transaction_event(t: &Transaction, version: &str, now: DateTime<Utc>) -> Event {
    let status = &t.status.code;
    let mut json = GoJson::with_capacity(1024 + 700 * t.operations.len());
    envelope(&mut json, "transaction", status, version, now, t, |json| {
        transaction_payload(json, t)
    });
    Event::new(
        "transaction",
        format!("midaz.transaction.{status}"),
        format_args!("transaction/{}/{status}", t.id),
        json,
    )
}

/// One event per overdraft movement: an operation on the `overdraft` balance key with a
/// non-zero amount, `debit` (drawn) or `credit` (repaid, or cleared when nothing is left).
pub fn overdraft_events(t: &Transaction, version: &str, now: DateTime<Utc>) -> Vec<Event> {
    t.operations
        .iter()
        .filter_map(|op| {
            let (action, amount, left) = overdraft(op)?;
            let mut json = GoJson::with_capacity(512);
            envelope(&mut json, "balance", action, version, now, t, |json| {
                json.raw("{\"accountId\":");
                json.uuid(&op.account_id);
                json.raw(",\"transactionId\":");
                json.uuid(&t.id);
                json.raw(",\"amount\":");
                json.string(amount.as_str());
                json.raw(",\"overdraftBalance\":");
                json.string(left);
                json.raw(",\"timestamp\":");
                json.time(now);
                json.raw("}");
            });
            Some(Event::new(
                "overdraft",
                format!("midaz.balance.{action}"),
                format_args!("overdraft/{}/{action}", op.id),
                json,
            ))
        })
        .collect()
}

/// The action, amount and overdraft left of an operation that moves an overdraft.
fn overdraft(op: &Operation) -> Option<(&'static str, &Decimal, &str)> {
    if op.balance_key.as_deref() != Some(OVERDRAFT_BALANCE_KEY) {
        return None;
    }
    let amount = op
        .amount
        .as_ref()?
        .value
        .as_ref()
        .filter(|a| !a.is_zero())?;
    let left = op
        .balance_after
        .as_ref()
        .and_then(|b| b.available.as_ref())
        .map_or("0", Decimal::as_str);
    let action = match op.direction.as_deref()? {
        "debit" => "overdraft.drawn",
        "credit" if left == "0" => "overdraft.cleared",
        "credit" => "overdraft.repaid",
        _ => return None,
    };
    Some((action, amount, left))
}

/// `mmodel.Event`: source, eventType, action, timestamp, version, organizationId, ledgerId,
/// payload.
fn envelope(
    json: &mut GoJson,
    event_type: &str,
    action: &str,
    version: &str,
    now: DateTime<Utc>,
    t: &Transaction,
    payload: impl FnOnce(&mut GoJson),
) {
    json.raw("{\"source\":\"midaz\",\"eventType\":");
    json.string(event_type);
    json.raw(",\"action\":");
    json.string(action);
    json.raw(",\"timestamp\":");
    json.time(now);
    json.raw(",\"version\":");
    json.string(version);
    json.raw(",\"organizationId\":");
    json.uuid(&t.organization_id);
    json.raw(",\"ledgerId\":");
    json.uuid(&t.ledger_id);
    json.raw(",\"payload\":");
    payload(json);
    json.raw("}");
}

/// Go's zero `time.Time`, what a value the message left out prints as.
fn go_zero_time() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).expect("0001-01-01 is in range")
}

fn decimal(json: &mut GoJson, value: Option<&Decimal>) {
    json.opt_string(value.map(Decimal::as_str));
}

fn status(json: &mut GoJson, code: &str, description: Option<&str>) {
    json.raw("{\"code\":");
    json.string(code);
    json.raw(",\"description\":");
    json.opt_string(description);
    json.raw("}");
}

fn strings(json: &mut GoJson, values: Option<&[compact_str::CompactString]>) {
    let Some(values) = values else {
        return json.raw("null");
    };
    json.raw("[");
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            json.raw(",");
        }
        json.string(value);
    }
    json.raw("]");
}

/// `transaction.Transaction` of the ledger (its `Body` is `json:"-"`).
fn transaction_payload(json: &mut GoJson, t: &Transaction) {
    json.raw("{\"id\":");
    json.uuid(&t.id);
    if let Some(parent) = t.parent_transaction_id {
        json.raw(",\"parentTransactionId\":");
        json.uuid(&parent);
    }
    json.raw(",\"description\":");
    json.string(&t.description);
    json.raw(",\"status\":");
    status(json, &t.status.code, t.status.description.as_deref());
    json.raw(",\"amount\":");
    decimal(json, t.amount.as_ref());
    json.raw(",\"assetCode\":");
    json.string(&t.asset_code);
    json.raw(",\"chartOfAccountsGroupName\":");
    json.string(&t.chart_of_accounts_group_name);
    json.raw(",\"source\":");
    strings(json, t.source.as_deref());
    json.raw(",\"destination\":");
    strings(json, t.destination.as_deref());
    json.raw(",\"ledgerId\":");
    json.uuid(&t.ledger_id);
    json.raw(",\"organizationId\":");
    json.uuid(&t.organization_id);
    json.raw(",\"route\":");
    json.string(t.route.as_deref().unwrap_or_default());
    if let Some(route_id) = t.route_id {
        json.raw(",\"routeId\":");
        json.uuid(&route_id);
    }
    json.raw(",\"feesSkipped\":");
    json.bool(t.fees_skipped);
    json.raw(",\"tracerSkipped\":");
    json.bool(t.tracer_skipped);
    json.raw(",\"createdAt\":");
    json.time(t.created_at);
    json.raw(",\"updatedAt\":");
    json.time(t.updated_at.unwrap_or_else(go_zero_time));
    json.raw(",\"deletedAt\":");
    json.opt_time(t.deleted_at);
    if let Some(metadata) = t.metadata.as_ref().filter(|m| !m.is_empty()) {
        json.raw(",\"metadata\":");
        json.map(metadata);
    }
    json.raw(",\"operations\":");
    if t.operations.is_empty() {
        json.raw("null");
    } else {
        json.raw("[");
        for (i, op) in t.operations.iter().enumerate() {
            if i > 0 {
                json.raw(",");
            }
            operation(json, op);
        }
        json.raw("]");
    }
    json.raw("}");
}

/// `operation.Balance`: its `overdraftUsed` is a value, always there.
fn balance(json: &mut GoJson, b: Option<&Balance>) {
    json.raw("{\"available\":");
    decimal(json, b.and_then(|b| b.available.as_ref()));
    json.raw(",\"onHold\":");
    decimal(json, b.and_then(|b| b.on_hold.as_ref()));
    json.raw(",\"version\":");
    match b.and_then(|b| b.version) {
        Some(version) => json.raw(&version.to_string()),
        None => json.raw("null"),
    }
    json.raw(",\"overdraftUsed\":");
    json.string(
        b.and_then(|b| b.overdraft_used.as_ref())
            .map_or("0", Decimal::as_str),
    );
    json.raw("}");
}

/// `operation.Operation` of the ledger (its `Snapshot` is `json:"-"`).
fn operation(json: &mut GoJson, o: &Operation) {
    json.raw("{\"id\":");
    json.uuid(&o.id);
    json.raw(",\"transactionId\":");
    json.uuid(&o.transaction_id);
    json.raw(",\"description\":");
    json.string(&o.description);
    json.raw(",\"type\":");
    json.string(&o.kind);
    json.raw(",\"assetCode\":");
    json.string(&o.asset_code);
    json.raw(",\"chartOfAccounts\":");
    json.string(&o.chart_of_accounts);
    json.raw(",\"amount\":{\"value\":");
    decimal(json, o.amount.as_ref().and_then(|a| a.value.as_ref()));
    json.raw("},\"balance\":");
    balance(json, o.balance.as_ref());
    json.raw(",\"balanceAfter\":");
    balance(json, o.balance_after.as_ref());
    json.raw(",\"status\":");
    status(json, &o.status.code, o.status.description.as_deref());
    json.raw(",\"accountId\":");
    json.uuid(&o.account_id);
    json.raw(",\"accountAlias\":");
    json.string(&o.account_alias);
    json.raw(",\"balanceKey\":");
    json.string(o.balance_key.as_deref().unwrap_or_default());
    json.raw(",\"balanceId\":");
    json.uuid(&o.balance_id);
    json.raw(",\"organizationId\":");
    json.uuid(&o.organization_id);
    json.raw(",\"ledgerId\":");
    json.uuid(&o.ledger_id);
    json.raw(",\"route\":");
    json.string(o.route.as_deref().unwrap_or_default());
    json.raw(",\"balanceAffected\":");
    json.bool(o.balance_affected.unwrap_or(true));
    if let Some(direction) = o.direction.as_deref().filter(|d| !d.is_empty()) {
        json.raw(",\"direction\":");
        json.string(direction);
    }
    if let Some(route_id) = o.route_id {
        json.raw(",\"routeId\":");
        json.uuid(&route_id);
    }
    for (key, value) in [
        ("routeCode", &o.route_code),
        ("routeDescription", &o.route_description),
    ] {
        if let Some(value) = value {
            json.raw(&format!(",\"{key}\":"));
            json.string(value);
        }
    }
    json.raw(",\"createdAt\":");
    json.time(o.created_at);
    json.raw(",\"updatedAt\":");
    json.time(o.updated_at.unwrap_or_else(go_zero_time));
    json.raw(",\"deletedAt\":");
    json.opt_time(o.deleted_at);
    json.raw(",\"metadata\":");
    match &o.metadata {
        Some(metadata) => json.map(metadata),
        None => json.raw("null"),
    }
    json.raw("}");
}
