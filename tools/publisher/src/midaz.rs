//! Writes a transaction the way the reference ledger's producer does (its Go structs through
//! its msgpack library): an envelope whose `QueueData[0].Value` is the payload, itself
//! msgpack; Go field names as keys; ids as text inside the payload and 16 raw bytes in the
//! envelope; decimals in shopspring's binary form; timestamps as the msgpack extension.
//!
//! For demos and benchmarks. The recorder's support of this format is proven against bodies
//! the ledger's own libraries wrote (`tests/fixtures/midaz-wire`), not against this encoder.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer, ser::SerializeTuple};
use uuid::Uuid;

use bulk_recorder::message::{Decimal, Metadata, Operation, Transaction};

/// A decimal as shopspring's `MarshalBinary`: `[exponent i32 BE][0x02|0x03][magnitude BE]`.
struct GoDecimal<'a>(&'a Decimal);

impl Serialize for GoDecimal<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.0.as_str();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits = format!("{integer}{fraction}");
        let magnitude: u128 = digits.parse().map_err(|_| {
            serde::ser::Error::custom(format!("{text} has more digits than this encoder writes"))
        })?;
        let exponent = -(fraction.len() as i32);
        let mut bytes = exponent.to_be_bytes().to_vec();
        bytes.push(if negative { 0x03 } else { 0x02 });
        let be = magnitude.to_be_bytes();
        let first = be.iter().position(|b| *b != 0).unwrap_or(be.len());
        bytes.extend_from_slice(&be[first..]);
        s.serialize_bytes(&bytes)
    }
}

fn go_decimal<S: Serializer>(d: &Option<&Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => GoDecimal(d).serialize(s),
        None => s.serialize_none(),
    }
}

/// A `time.Time` as the msgpack timestamp extension, in the smallest form that holds it.
struct GoTime(DateTime<Utc>);

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let seconds = self.0.timestamp();
        let nanos = self.0.timestamp_subsec_nanos();
        let data = if (0..1 << 34).contains(&seconds) {
            if nanos == 0 && seconds < 1 << 32 {
                (seconds as u32).to_be_bytes().to_vec()
            } else {
                ((u64::from(nanos) << 34) | seconds as u64)
                    .to_be_bytes()
                    .to_vec()
            }
        } else {
            let mut data = nanos.to_be_bytes().to_vec();
            data.extend_from_slice(&seconds.to_be_bytes());
            data
        };
        // rmp-serde writes an extension for this newtype name holding (type, bytes).
        s.serialize_newtype_struct("_ExtStruct", &Ext(-1, data))
    }
}

struct Ext(i8, Vec<u8>);

impl Serialize for Ext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut tuple = s.serialize_tuple(2)?;
        tuple.serialize_element(&self.0)?;
        tuple.serialize_element(&Bin(&self.1))?;
        tuple.end()
    }
}

struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn go_time<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => GoTime(*t).serialize(s),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope<'a> {
    #[serde(rename = "OrganizationID")]
    organization_id: Bin<'a>,
    #[serde(rename = "LedgerID")]
    ledger_id: Bin<'a>,
    #[serde(rename = "AuditID")]
    audit_id: Bin<'a>,
    #[serde(rename = "AccountID")]
    account_id: Bin<'a>,
    queue_data: [QueueItem<'a>; 1],
}

#[derive(Serialize)]
struct QueueItem<'a> {
    #[serde(rename = "ID")]
    id: Bin<'a>,
    #[serde(rename = "Value")]
    value: Bin<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Payload<'a> {
    validate: Validate,
    transaction: GoTransaction<'a>,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Validate {
    pending: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GoStatus<'a> {
    code: &'a str,
    description: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GoTransaction<'a> {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ParentTransactionID")]
    parent_transaction_id: Option<String>,
    description: &'a str,
    status: GoStatus<'a>,
    #[serde(serialize_with = "go_decimal")]
    amount: Option<&'a Decimal>,
    asset_code: &'a str,
    chart_of_accounts_group_name: &'a str,
    #[serde(rename = "LedgerID")]
    ledger_id: String,
    #[serde(rename = "OrganizationID")]
    organization_id: String,
    route: &'a str,
    #[serde(rename = "RouteID")]
    route_id: Option<String>,
    fees_skipped: bool,
    tracer_skipped: bool,
    #[serde(serialize_with = "go_time")]
    created_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "go_time")]
    updated_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "go_time")]
    deleted_at: Option<DateTime<Utc>>,
    operations: Vec<GoOperation<'a>>,
    source: Option<&'a [compact_str::CompactString]>,
    destination: Option<&'a [compact_str::CompactString]>,
    metadata: Option<&'a Metadata>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GoAmount<'a> {
    #[serde(serialize_with = "go_decimal")]
    value: Option<&'a Decimal>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GoBalance<'a> {
    #[serde(serialize_with = "go_decimal")]
    available: Option<&'a Decimal>,
    #[serde(serialize_with = "go_decimal")]
    on_hold: Option<&'a Decimal>,
    version: Option<i64>,
    #[serde(serialize_with = "go_decimal")]
    overdraft_used: Option<&'a Decimal>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GoOperation<'a> {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "TransactionID")]
    transaction_id: String,
    description: &'a str,
    #[serde(rename = "Type")]
    kind: &'a str,
    asset_code: &'a str,
    chart_of_accounts: &'a str,
    amount: GoAmount<'a>,
    balance: GoBalance<'a>,
    balance_after: GoBalance<'a>,
    status: GoStatus<'a>,
    #[serde(rename = "AccountID")]
    account_id: String,
    account_alias: &'a str,
    balance_key: &'a str,
    #[serde(rename = "BalanceID")]
    balance_id: String,
    #[serde(rename = "OrganizationID")]
    organization_id: String,
    #[serde(rename = "LedgerID")]
    ledger_id: String,
    route: &'a str,
    balance_affected: bool,
    direction: &'a str,
    #[serde(rename = "RouteID")]
    route_id: Option<String>,
    route_code: Option<&'a str>,
    route_description: Option<&'a str>,
    #[serde(serialize_with = "go_time")]
    created_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "go_time")]
    updated_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "go_time")]
    deleted_at: Option<DateTime<Utc>>,
    snapshot: Snapshot,
    metadata: Option<&'a Metadata>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Snapshot {
    overdraft_used_before: &'static str,
    overdraft_used_after: &'static str,
}

fn balance(b: Option<&bulk_recorder::message::Balance>) -> GoBalance<'_> {
    GoBalance {
        available: b.and_then(|b| b.available.as_ref()),
        on_hold: b.and_then(|b| b.on_hold.as_ref()),
        version: b.and_then(|b| b.version),
        overdraft_used: b.and_then(|b| b.overdraft_used.as_ref()),
    }
}

fn operation(o: &Operation) -> GoOperation<'_> {
    GoOperation {
        id: o.id.to_string(),
        transaction_id: o.transaction_id.to_string(),
        description: &o.description,
        kind: &o.kind,
        asset_code: &o.asset_code,
        chart_of_accounts: &o.chart_of_accounts,
        amount: GoAmount {
            value: o.amount.as_ref().and_then(|a| a.value.as_ref()),
        },
        balance: balance(o.balance.as_ref()),
        balance_after: balance(o.balance_after.as_ref()),
        status: GoStatus {
            code: &o.status.code,
            description: o.status.description.as_deref(),
        },
        account_id: o.account_id.to_string(),
        account_alias: &o.account_alias,
        balance_key: o.balance_key.as_deref().unwrap_or_default(),
        balance_id: o.balance_id.to_string(),
        organization_id: o.organization_id.to_string(),
        ledger_id: o.ledger_id.to_string(),
        route: o.route.as_deref().unwrap_or_default(),
        balance_affected: o.balance_affected.unwrap_or(true),
        direction: o.direction.as_deref().unwrap_or_default(),
        route_id: o.route_id.map(|r| r.to_string()),
        route_code: o.route_code.as_deref(),
        route_description: o.route_description.as_deref(),
        created_at: Some(o.created_at),
        updated_at: o.updated_at,
        deleted_at: o.deleted_at,
        snapshot: Snapshot {
            overdraft_used_before: "0",
            overdraft_used_after: "0",
        },
        metadata: o.metadata.as_ref(),
    }
}

/// The ledger's queue message for `t`. The PENDING input (`Body`) is not written: a recorder
/// reading this stores `body` NULL.
/// `settles_pending`: the message commits or cancels a PENDING transaction, which the ledger
/// marks with `Validate.Pending` (a new posting has it false, a PENDING one true).
pub fn encode(t: &Transaction, settles_pending: bool) -> Vec<u8> {
    let payload = Payload {
        validate: Validate {
            pending: t.is_pending() || settles_pending,
        },
        transaction: GoTransaction {
            id: t.id.to_string(),
            parent_transaction_id: t.parent_transaction_id.map(|p| p.to_string()),
            description: &t.description,
            status: GoStatus {
                code: &t.status.code,
                description: t.status.description.as_deref(),
            },
            amount: t.amount.as_ref(),
            asset_code: &t.asset_code,
            chart_of_accounts_group_name: &t.chart_of_accounts_group_name,
            ledger_id: t.ledger_id.to_string(),
            organization_id: t.organization_id.to_string(),
            route: t.route.as_deref().unwrap_or_default(),
            route_id: t.route_id.map(|r| r.to_string()),
            fees_skipped: t.fees_skipped,
            tracer_skipped: t.tracer_skipped,
            created_at: Some(t.created_at),
            updated_at: t.updated_at,
            deleted_at: t.deleted_at,
            operations: t.operations.iter().map(operation).collect(),
            source: t.source.as_deref(),
            destination: t.destination.as_deref(),
            metadata: t.metadata.as_ref(),
        },
        version: "v2",
    };
    let payload = to_msgpack(&payload);
    let zero = Uuid::nil();
    to_msgpack(&Envelope {
        organization_id: Bin(t.organization_id.as_bytes()),
        ledger_id: Bin(t.ledger_id.as_bytes()),
        audit_id: Bin(zero.as_bytes()),
        account_id: Bin(zero.as_bytes()),
        queue_data: [QueueItem {
            id: Bin(t.id.as_bytes()),
            value: Bin(&payload),
        }],
    })
}

fn to_msgpack(value: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    value
        .serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
        .expect("a ledger message serializes");
    out
}
