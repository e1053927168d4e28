//! The transaction a message carries, as the tables store it, and the rules the tables cannot
//! check themselves.
//!
//! Field names follow the reference ledger's API (camelCase); this struct is also the shape
//! of the `json` and `msgpack` formats (any encoder: see [`super::fields`]). The `midaz` format
//! is converted into it. Everything a row needs is decoded and validated before a message
//! joins a bulk, so a bad message is rejected on its own and never costs the rest of the bulk
//! a database round-trip.

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Decimal, fields};

/// Statuses a PENDING transaction may move to (its commit or its cancel).
pub const FINAL_STATUSES: [&str; 2] = ["APPROVED", "CANCELED"];
pub const PENDING: &str = "PENDING";

/// One ledger transaction, as published for asynchronous persistence.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    #[serde(deserialize_with = "fields::uuid")]
    pub id: Uuid,
    #[serde(default, deserialize_with = "fields::opt_uuid")]
    pub parent_transaction_id: Option<Uuid>,
    #[serde(default, deserialize_with = "fields::null_as_default")]
    pub description: CompactString,
    pub status: Status,
    #[serde(default)]
    pub amount: Option<Decimal>,
    pub asset_code: CompactString,
    #[serde(default, deserialize_with = "fields::null_as_default")]
    pub chart_of_accounts_group_name: CompactString,
    #[serde(deserialize_with = "fields::uuid")]
    pub ledger_id: Uuid,
    #[serde(deserialize_with = "fields::uuid")]
    pub organization_id: Uuid,
    /// The transaction's input (the ledger keeps it for PENDING transactions), as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<JsonText>,
    #[serde(default)]
    pub route: Option<CompactString>,
    #[serde(default, deserialize_with = "fields::opt_uuid")]
    pub route_id: Option<Uuid>,
    #[serde(default, deserialize_with = "fields::null_as_default")]
    pub fees_skipped: bool,
    #[serde(default, deserialize_with = "fields::null_as_default")]
    pub tracer_skipped: bool,
    #[serde(deserialize_with = "fields::time")]
    pub created_at: DateTime<Utc>,
    #[serde(default, deserialize_with = "fields::opt_time")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "fields::opt_time")]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "fields::null_as_default")]
    pub operations: Vec<Operation>,
    /// The accounts money comes from and goes to, as the ledger's API takes them (its events
    /// carry them; not a column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Vec<CompactString>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Vec<CompactString>>,
    /// Kept in the ledger's document store (`MONGODB_URL`), never in these tables.
    #[serde(
        default,
        deserialize_with = "fields::metadata",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata: Option<Metadata>,
    // The nullable columns of the ledger's later migrations, written only where the table has
    // them (see `crate::store::layout`) and the message carries them. Not flattened into a
    // struct of their own: serde's `flatten` buffers the whole message to decode it.
    #[serde(
        default,
        deserialize_with = "fields::opt_uuid",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_id: Option<Uuid>,
    /// `CARD`, `WIRE`, `PIX`, `CRYPTO` (a `VARCHAR(16)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operational_type_code: Option<CompactString>,
    #[serde(
        default,
        deserialize_with = "fields::opt_uuid",
        skip_serializing_if = "Option::is_none"
    )]
    pub applied_exception_id: Option<Uuid>,
}

/// The ledger's metadata of a transaction or an operation: a map of keys to JSON values.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// A status as the ledger sends it: a code and an optional description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Status {
    #[serde(default, deserialize_with = "fields::null_as_default")]
    pub code: CompactString,
    #[serde(default)]
    pub description: Option<CompactString>,
}

/// One operation (a leg: debit, credit, hold, release...) of a transaction.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(deserialize_with = "fields::uuid")]
    pub id: Uuid,
    #[serde(deserialize_with = "fields::uuid")]
    pub transaction_id: Uuid,
    #[serde(default, deserialize_with = "fields::null_as_default")]
    pub description: CompactString,
    #[serde(rename = "type")]
    pub kind: CompactString,
    pub asset_code: CompactString,
    #[serde(default, deserialize_with = "fields::null_as_default")]
    pub chart_of_accounts: CompactString,
    #[serde(default)]
    pub amount: Option<Amount>,
    #[serde(default)]
    pub balance: Option<Balance>,
    #[serde(default)]
    pub balance_after: Option<Balance>,
    /// The reference ledger's producer leaves it empty; its rows hold `''`.
    #[serde(default, deserialize_with = "fields::null_as_default")]
    pub status: Status,
    #[serde(deserialize_with = "fields::uuid")]
    pub account_id: Uuid,
    pub account_alias: CompactString,
    #[serde(default)]
    pub balance_key: Option<CompactString>,
    #[serde(deserialize_with = "fields::uuid")]
    pub balance_id: Uuid,
    #[serde(deserialize_with = "fields::uuid")]
    pub organization_id: Uuid,
    #[serde(deserialize_with = "fields::uuid")]
    pub ledger_id: Uuid,
    #[serde(default)]
    pub route: Option<CompactString>,
    #[serde(default, deserialize_with = "fields::opt_uuid")]
    pub route_id: Option<Uuid>,
    #[serde(default)]
    pub route_code: Option<CompactString>,
    #[serde(default)]
    pub route_description: Option<CompactString>,
    #[serde(default)]
    pub balance_affected: Option<bool>,
    #[serde(default)]
    pub direction: Option<CompactString>,
    /// Overdraft usage before and after the operation, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<JsonText>,
    #[serde(deserialize_with = "fields::time")]
    pub created_at: DateTime<Utc>,
    #[serde(default, deserialize_with = "fields::opt_time")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "fields::opt_time")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Kept in the ledger's document store (see [`Transaction::metadata`]).
    #[serde(
        default,
        deserialize_with = "fields::metadata",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata: Option<Metadata>,
}

/// The amount an operation moves.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Amount {
    #[serde(default)]
    pub value: Option<Decimal>,
}

/// A balance before or after an operation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    #[serde(default)]
    pub available: Option<Decimal>,
    #[serde(default)]
    pub on_hold: Option<Decimal>,
    #[serde(default)]
    pub version: Option<i64>,
    /// Overdraft in use (the ledger's events carry it; not a column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdraft_used: Option<Decimal>,
}

/// A JSON document (a `jsonb` column) as compact JSON text, decoded from any JSON value or
/// msgpack map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(pub String);

impl JsonText {
    pub fn from_value(value: &serde_json::Value) -> Self {
        Self(value.to_string())
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(|v| Self::from_value(&v))
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value: serde_json::Value =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        value.serialize(s)
    }
}

impl Transaction {
    /// Whether the transaction or one of its operations carries metadata (a non-empty map).
    pub fn has_metadata(&self) -> bool {
        let carries = |m: &Option<Metadata>| m.as_ref().is_some_and(|m| !m.is_empty());
        carries(&self.metadata) || self.operations.iter().any(|o| carries(&o.metadata))
    }

    /// Whether this message can move a stored PENDING transaction to its final status.
    pub fn is_final(&self) -> bool {
        FINAL_STATUSES.contains(&self.status.code.as_str())
    }

    pub fn is_pending(&self) -> bool {
        self.status.code == PENDING
    }

    /// True when both describe the same transaction: the fields a status transition never
    /// changes. Two messages with the same id that differ here are a producer reusing an id.
    pub fn same_content(&self, other: &Transaction) -> bool {
        self.amount == other.amount
            && self.asset_code == other.asset_code
            && self.ledger_id == other.ledger_id
            && self.organization_id == other.organization_id
            && self.parent_transaction_id == other.parent_transaction_id
    }

    /// The rules the tables cannot check, or would check only by failing a whole bulk.
    pub fn validate(&self) -> Result<(), String> {
        non_blank("status.code", &self.status.code)?;
        non_blank("assetCode", &self.asset_code)?;
        not_negative("amount", self.amount.as_ref())?;
        for (field, value) in [
            ("description", Some(self.description.as_str())),
            (
                "chartOfAccountsGroupName",
                Some(self.chart_of_accounts_group_name.as_str()),
            ),
            ("status.description", self.status.description.as_deref()),
            ("route", self.route.as_deref()),
        ] {
            no_nul(field, value)?;
        }
        json_without_nul("body", self.body.as_ref())?;
        if self.parent_transaction_id == Some(self.id) {
            return Err("parentTransactionId equals the transaction's own id".into());
        }
        for (i, op) in self.operations.iter().enumerate() {
            op.validate(self.id)
                .map_err(|e| format!("operations[{i}] ({}): {e}", op.id))?;
        }
        Ok(())
    }
}

impl Operation {
    fn validate(&self, transaction_id: Uuid) -> Result<(), String> {
        if self.transaction_id != transaction_id {
            return Err(format!(
                "transactionId {} does not match the transaction's id {transaction_id}",
                self.transaction_id
            ));
        }
        non_blank("type", &self.kind)?;
        non_blank("assetCode", &self.asset_code)?;
        non_blank("accountAlias", &self.account_alias)?;
        not_negative(
            "amount.value",
            self.amount.as_ref().and_then(|a| a.value.as_ref()),
        )?;
        if let Some(direction) = &self.direction
            && direction.chars().count() > 10
        {
            return Err(format!(
                "direction {direction:?} is longer than 10 characters"
            ));
        }
        for (field, value) in [
            ("description", Some(self.description.as_str())),
            ("chartOfAccounts", Some(self.chart_of_accounts.as_str())),
            ("status.code", Some(self.status.code.as_str())),
            ("status.description", self.status.description.as_deref()),
            ("balanceKey", self.balance_key.as_deref()),
            ("route", self.route.as_deref()),
            ("routeCode", self.route_code.as_deref()),
            ("routeDescription", self.route_description.as_deref()),
            ("direction", self.direction.as_deref()),
        ] {
            no_nul(field, value)?;
        }
        json_without_nul("snapshot", self.snapshot.as_ref())
    }
}

fn non_blank(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field} is required and must not be blank"));
    }
    no_nul(field, Some(value))
}

/// PostgreSQL text cannot hold NUL: catch it here rather than fail the bulk.
fn no_nul(field: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(v) if v.contains('\0') => Err(format!("{field} contains a NUL character")),
        _ => Ok(()),
    }
}

/// Nor can `jsonb` (`\u0000` in a string).
fn json_without_nul(field: &str, value: Option<&JsonText>) -> Result<(), String> {
    match value {
        Some(json) if json.0.contains("\\u0000") => {
            Err(format!("{field} contains a NUL character"))
        }
        _ => Ok(()),
    }
}

fn not_negative(field: &str, value: Option<&Decimal>) -> Result<(), String> {
    match value {
        Some(v) if v.is_negative() => Err(format!("{field} {v} is negative")),
        _ => Ok(()),
    }
}
