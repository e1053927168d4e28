//! The message format: one transaction with its operations, as JSON or msgpack.
//!
//! Field names follow the reference ledger's API (camelCase). Everything a row needs is decoded
//! and validated here, before a message joins a bulk, so that a bad message is rejected on its
//! own and never costs the rest of the bulk a database round-trip.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use uuid::Uuid;

use crate::decimal;

/// One ledger transaction, as published for asynchronous persistence.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub id: Uuid,
    #[serde(default)]
    pub parent_transaction_id: Option<Uuid>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    pub status: Status,
    #[serde(default, with = "decimal::option")]
    pub amount: Option<Decimal>,
    pub asset_code: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub chart_of_accounts_group_name: String,
    pub ledger_id: Uuid,
    pub organization_id: Uuid,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub route_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub operations: Vec<Operation>,
}

/// A status as the ledger sends it: a code and an optional description.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Status {
    pub code: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// One operation (a debit or a credit) of a transaction.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub id: Uuid,
    pub transaction_id: Uuid,
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub asset_code: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub chart_of_accounts: String,
    #[serde(default)]
    pub amount: Option<Amount>,
    #[serde(default)]
    pub balance: Option<Balance>,
    #[serde(default)]
    pub balance_after: Option<Balance>,
    pub status: Status,
    pub account_id: Uuid,
    pub account_alias: String,
    #[serde(default)]
    pub balance_key: Option<String>,
    pub balance_id: Uuid,
    pub organization_id: Uuid,
    pub ledger_id: Uuid,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub route_id: Option<Uuid>,
    #[serde(default)]
    pub balance_affected: Option<bool>,
    #[serde(default)]
    pub direction: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The amount an operation moves.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Amount {
    #[serde(default, with = "decimal::option")]
    pub value: Option<Decimal>,
}

/// A balance before or after an operation.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    #[serde(default, with = "decimal::option")]
    pub available: Option<Decimal>,
    #[serde(default, with = "decimal::option")]
    pub on_hold: Option<Decimal>,
    #[serde(default)]
    pub version: Option<i64>,
}

/// Why a message was rejected; `reason()` labels `bulk_recorder_messages_rejected_total`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("empty body")]
    Empty,
    #[error("body of {size} bytes exceeds BULK_RECORDER_MAX_MESSAGE_BYTES={limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported content type {0:?}: send application/json or application/msgpack")]
    ContentType(String),
    #[error("malformed {format}: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    #[error("invalid transaction: {0}")]
    Invalid(String),
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::ContentType(_) => "content_type",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::Invalid(_) => "invalid",
        }
    }
}

/// The body encodings the recorder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Msgpack,
}

impl Format {
    /// The format named by an AMQP `content_type`; JSON when there is none.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, DecodeError> {
        let Some(raw) = content_type else {
            return Ok(Format::Json);
        };
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" | "application/json" | "text/json" => Ok(Format::Json),
            "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
                Ok(Format::Msgpack)
            }
            _ => Err(DecodeError::ContentType(raw.to_string())),
        }
    }
}

/// Decodes and validates one message body.
pub fn decode(
    body: &[u8],
    content_type: Option<&str>,
    max_bytes: usize,
) -> Result<Transaction, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    if body.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            size: body.len(),
            limit: max_bytes,
        });
    }
    let transaction: Transaction = match Format::from_content_type(content_type)? {
        Format::Json => serde_json::from_slice(body).map_err(|e| DecodeError::Malformed {
            format: "JSON",
            detail: e.to_string(),
        })?,
        Format::Msgpack => rmp_serde::from_slice(body).map_err(|e| DecodeError::Malformed {
            format: "msgpack",
            detail: e.to_string(),
        })?,
    };
    transaction.validate().map_err(DecodeError::Invalid)?;
    Ok(transaction)
}

impl Transaction {
    /// The rules the tables cannot check, or would check only by failing a whole bulk.
    pub fn validate(&self) -> Result<(), String> {
        non_blank("status.code", &self.status.code)?;
        non_blank("assetCode", &self.asset_code)?;
        not_negative("amount", self.amount)?;
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
        non_blank("status.code", &self.status.code)?;
        non_blank("accountAlias", &self.account_alias)?;
        not_negative("amount.value", self.amount.as_ref().and_then(|a| a.value))?;
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
            ("status.description", self.status.description.as_deref()),
            ("balanceKey", self.balance_key.as_deref()),
            ("route", self.route.as_deref()),
            ("direction", self.direction.as_deref()),
        ] {
            no_nul(field, value)?;
        }
        Ok(())
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

fn not_negative(field: &str, value: Option<Decimal>) -> Result<(), String> {
    match value {
        Some(v) if v.is_sign_negative() && !v.is_zero() => Err(format!("{field} {v} is negative")),
        _ => Ok(()),
    }
}

/// `null` where a string or list is expected means "empty": it must not sink a NOT NULL column.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
