//! The reference ledger's queue message, as its Go encoder writes it.
//!
//! Go structs become msgpack maps keyed by their Go field names; missing keys mean Go's zero
//! values (older producers leave out fields added later) and unknown keys are ignored, so
//! every field here has a default. Only what reaches the tables and what the ledger's consumer
//! does besides (`Validate.Pending` for its Redis backup, the metadata for its document store,
//! the accounts and overdraft in its events) is declared: everything else (balances, validation
//! maps) is skipped without being decoded.

use std::borrow::Cow;

use compact_str::CompactString;

use serde::Deserialize;

use super::dsl::Dsl;
use crate::message::{
    Decimal, Metadata,
    fields::{self, AnyTime},
};

/// The outer document (`mmodel.Queue`).
#[derive(Deserialize)]
pub struct Envelope<'a> {
    /// `None` when the key is missing (not a ledger message: refused), `Some(None)` for `nil`
    /// (Go's encoding of an empty slice: skipped like `[]`).
    #[serde(
        rename = "QueueData",
        default,
        borrow,
        deserialize_with = "fields::present"
    )]
    pub queue_data: Option<Option<Vec<QueueItem<'a>>>>,
}

/// One entry of `QueueData`: the transaction id and the payload, itself a msgpack document.
#[derive(Deserialize)]
pub struct QueueItem<'a> {
    /// Go's `json.RawMessage`, written as `bin` (a re-encoder may have made it `str`).
    #[serde(rename = "Value", default, borrow)]
    pub value: Option<RawBytes<'a>>,
}

/// Bytes borrowed from the message body when they can be.
pub struct RawBytes<'a>(pub Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for RawBytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawBytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the payload as bin")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(RawBytes(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(RawBytes(Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawBytes(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawBytes(Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_any(V)
    }
}

/// The inner document (`TransactionProcessingPayload`).
///
/// `Validate.Pending` is how the ledger's consumer tells a commit or cancel from a new
/// posting. The rows do not need it (a stored PENDING row and a final status in the message
/// decide, the same rule for every format), but the ledger's Redis backup entry does: a new
/// posting's entry still says CREATED.
#[derive(Deserialize)]
pub struct Payload {
    #[serde(rename = "Transaction", default)]
    pub transaction: Option<Transaction>,
    #[serde(rename = "Validate", default)]
    pub validate: Option<Validate>,
    /// Absent in messages of older producers (v3.5.x).
    #[serde(rename = "Version", default)]
    pub version: Option<String>,
    /// Keys of the ledger's newer, outcome-backed payloads (Go field names, not confirmed from
    /// a captured message): either one with a value marks a payload its consumer must finalise
    /// itself.
    #[serde(
        rename = "AttemptOwner",
        default,
        deserialize_with = "fields::non_empty"
    )]
    pub attempt_owner: bool,
    #[serde(
        rename = "RevertRolloutToken",
        default,
        deserialize_with = "fields::non_empty"
    )]
    pub revert_rollout_token: bool,
    /// `BALANCE_MUTATION` or `ANNOTATION_ONLY` (the newer line; absent before).
    #[serde(rename = "EffectMode", default)]
    pub effect_mode: Option<CompactString>,
}

impl Payload {
    /// The key that makes this payload outcome-backed, if one does.
    pub fn outcome_backed(&self) -> Option<&'static str> {
        if self.attempt_owner {
            Some("AttemptOwner")
        } else if self.revert_rollout_token {
            Some("RevertRolloutToken")
        } else {
            None
        }
    }

    /// `EffectMode: ANNOTATION_ONLY`: a NOTED annotation that moves no balance.
    pub fn annotation_only(&self) -> bool {
        self.effect_mode.as_deref() == Some("ANNOTATION_ONLY")
    }
}

/// The ledger's validation of the input (`mtransaction.Responses`): only `Pending` is read.
#[derive(Deserialize)]
pub struct Validate {
    #[serde(
        rename = "Pending",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub pending: bool,
}

#[derive(Deserialize)]
pub struct Transaction {
    /// Kept in the ledger's document store, not in these tables.
    #[serde(rename = "Metadata", default, deserialize_with = "fields::metadata")]
    pub metadata: Option<Metadata>,
    #[serde(rename = "Source", default)]
    pub source: Option<Vec<CompactString>>,
    #[serde(rename = "Destination", default)]
    pub destination: Option<Vec<CompactString>>,
    #[serde(rename = "ID", default, deserialize_with = "fields::null_as_default")]
    pub id: String,
    #[serde(rename = "ParentTransactionID", default)]
    pub parent_transaction_id: Option<String>,
    /// The later nullable columns (Go field names of the newer line, not confirmed from a
    /// captured message).
    #[serde(rename = "GroupID", default)]
    pub group_id: Option<String>,
    #[serde(rename = "Scheme", default)]
    pub scheme: Option<CompactString>,
    #[serde(rename = "OperationalTypeCode", default)]
    pub operational_type_code: Option<CompactString>,
    #[serde(rename = "AppliedExceptionID", default)]
    pub applied_exception_id: Option<String>,
    #[serde(
        rename = "Description",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub description: CompactString,
    #[serde(
        rename = "Status",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub status: Status,
    #[serde(rename = "Amount", default)]
    pub amount: Option<Decimal>,
    #[serde(
        rename = "AssetCode",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub asset_code: CompactString,
    #[serde(
        rename = "ChartOfAccountsGroupName",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub chart_of_accounts_group_name: CompactString,
    #[serde(
        rename = "LedgerID",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub ledger_id: String,
    #[serde(
        rename = "OrganizationID",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub organization_id: String,
    /// The input that created the transaction (its DSL); kept for PENDING transactions.
    #[serde(rename = "Body", default)]
    pub body: Option<Dsl>,
    #[serde(
        rename = "Route",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub route: CompactString,
    #[serde(rename = "RouteID", default)]
    pub route_id: Option<String>,
    #[serde(
        rename = "FeesSkipped",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub fees_skipped: bool,
    #[serde(
        rename = "TracerSkipped",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub tracer_skipped: bool,
    #[serde(rename = "CreatedAt", default)]
    pub created_at: Option<AnyTime>,
    #[serde(rename = "UpdatedAt", default)]
    pub updated_at: Option<AnyTime>,
    #[serde(rename = "DeletedAt", default)]
    pub deleted_at: Option<AnyTime>,
    #[serde(
        rename = "Operations",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub operations: Vec<Operation>,
}

#[derive(Deserialize, Default)]
pub struct Status {
    #[serde(rename = "Code", default, deserialize_with = "fields::null_as_default")]
    pub code: CompactString,
    #[serde(rename = "Description", default)]
    pub description: Option<CompactString>,
}

#[derive(Deserialize)]
pub struct Operation {
    #[serde(rename = "Metadata", default, deserialize_with = "fields::metadata")]
    pub metadata: Option<Metadata>,
    #[serde(rename = "ID", default, deserialize_with = "fields::null_as_default")]
    pub id: String,
    #[serde(
        rename = "TransactionID",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub transaction_id: String,
    #[serde(
        rename = "Description",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub description: CompactString,
    #[serde(rename = "Type", default, deserialize_with = "fields::null_as_default")]
    pub kind: CompactString,
    #[serde(
        rename = "AssetCode",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub asset_code: CompactString,
    #[serde(
        rename = "ChartOfAccounts",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub chart_of_accounts: CompactString,
    #[serde(
        rename = "Amount",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub amount: Amount,
    #[serde(
        rename = "Balance",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub balance: Balance,
    #[serde(
        rename = "BalanceAfter",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub balance_after: Balance,
    #[serde(
        rename = "Status",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub status: Status,
    #[serde(
        rename = "AccountID",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub account_id: String,
    #[serde(
        rename = "AccountAlias",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub account_alias: CompactString,
    #[serde(
        rename = "BalanceKey",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub balance_key: CompactString,
    #[serde(
        rename = "BalanceID",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub balance_id: String,
    #[serde(
        rename = "OrganizationID",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub organization_id: String,
    #[serde(
        rename = "LedgerID",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub ledger_id: String,
    #[serde(
        rename = "Route",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub route: CompactString,
    #[serde(
        rename = "BalanceAffected",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub balance_affected: bool,
    #[serde(
        rename = "Direction",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub direction: CompactString,
    #[serde(rename = "RouteID", default)]
    pub route_id: Option<String>,
    #[serde(rename = "RouteCode", default)]
    pub route_code: Option<CompactString>,
    #[serde(rename = "RouteDescription", default)]
    pub route_description: Option<CompactString>,
    #[serde(rename = "CreatedAt", default)]
    pub created_at: Option<AnyTime>,
    #[serde(rename = "UpdatedAt", default)]
    pub updated_at: Option<AnyTime>,
    #[serde(rename = "DeletedAt", default)]
    pub deleted_at: Option<AnyTime>,
    #[serde(
        rename = "Snapshot",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub snapshot: Snapshot,
}

#[derive(Deserialize, Default)]
pub struct Amount {
    #[serde(rename = "Value", default)]
    pub value: Option<Decimal>,
}

#[derive(Deserialize, Default)]
pub struct Balance {
    #[serde(rename = "Available", default)]
    pub available: Option<Decimal>,
    #[serde(rename = "OnHold", default)]
    pub on_hold: Option<Decimal>,
    #[serde(rename = "Version", default)]
    pub version: Option<i64>,
    /// A Go `decimal.Decimal` value (never nil): zero when absent.
    #[serde(rename = "OverdraftUsed", default)]
    pub overdraft_used: Option<Decimal>,
}

/// Overdraft usage around an operation, as the strings the producer wrote.
#[derive(Deserialize, Default)]
pub struct Snapshot {
    #[serde(
        rename = "OverdraftUsedBefore",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub overdraft_used_before: String,
    #[serde(
        rename = "OverdraftUsedAfter",
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub overdraft_used_after: String,
}
