//! The `midaz` format: the reference ledger's own queue message, byte for byte as its producer
//! writes it (see `tests/fixtures/midaz-wire/README.md` for the layout).
//!
//! A msgpack envelope holds, in each `QueueData[i].Value`, a second msgpack document: a
//! payload, whose `Transaction` is the row and whose `Transaction.Operations` are the operation
//! rows. The ledger's producer puts one entry in a message; its newer consumer reads every one,
//! and so does the recorder: a message's transactions are written together and the message is
//! settled as one unit (all its rows, or refused whole, naming the entry).
//!
//! Refused as `unsupported`, by name (dead-lettered, replayable to the ledger's consumer), never
//! written half: a payload the ledger's newer line marks outcome-backed (`AttemptOwner` or
//! `RevertRolloutToken`: its consumer proves Redis evidence and finalises a revert claim around
//! the write, which a bulk recorder cannot do), and an engine envelope (JSON with
//! `formatVersion`) in a `QueueData[i].Value`. The newer line's other payload keys are read where
//! they change rows (`EffectMode: ANNOTATION_ONLY`: an operation's missing balances are zero) and
//! otherwise ignored.
//! Column values follow what the ledger's own consumer writes: CREATED is stored as APPROVED,
//! the input (`body`) is kept only for PENDING transactions, directions are stored as sent, and
//! every decimal the tables hold as NOT NULL must be present (a nil amount is refused rather
//! than stored as 0). Routes and balance keys are kept as sent (the ledger's events carry them
//! so); the columns store a blank route as NULL and a blank balance key as `default`.

mod dsl;
mod wire;

use compact_str::CompactString;
use uuid::Uuid;

use super::{
    Bookkeeping, Decoded, Entry, JsonText, Transaction,
    model::{Amount, Balance, Operation, Status},
};
use crate::message::DecodeError;

/// The envelope's keys: a msgpack map starting with one of them is a ledger message.
pub const ENVELOPE_KEYS: [&str; 5] = [
    "OrganizationID",
    "LedgerID",
    "AuditID",
    "AccountID",
    "QueueData",
];

pub fn decode(body: &[u8]) -> Result<Decoded, DecodeError> {
    let envelope: wire::Envelope =
        rmp_serde::from_slice(body).map_err(|e| malformed("envelope", e))?;
    let Some(items) = envelope.queue_data else {
        return Err(DecodeError::Malformed {
            format: "midaz",
            detail: "the envelope has no QueueData key: not a ledger message (a producer that \
                     renamed it would otherwise have every message acknowledged unwritten)"
                .into(),
        });
    };
    let items = items.unwrap_or_default();
    if items.is_empty() {
        return Ok(Decoded::Skip { reason: "empty" });
    }
    let mut entries = Vec::with_capacity(items.len());
    let mut legacy = false;
    for (index, item) in items.iter().enumerate() {
        let (entry, entry_legacy) = decode_entry(index, item)?;
        legacy |= entry_legacy;
        entries.push(entry);
    }
    Ok(Decoded::Transactions {
        entries,
        format: if legacy { "midaz_legacy" } else { "midaz" },
    })
}

/// `QueueData[index]`: its transaction, and whether its payload is a legacy one (no `Version`).
fn decode_entry(index: usize, item: &wire::QueueItem) -> Result<(Entry, bool), DecodeError> {
    let Some(value) = &item.value else {
        return Err(DecodeError::Invalid(format!(
            "QueueData[{index}].Value is nil"
        )));
    };
    if let Some(envelope) = nested_engine_envelope(&value.0) {
        return Err(DecodeError::Unsupported(format!(
            "QueueData[{index}].Value is {envelope}, whose rows the ledger derives with its own \
             engine: run the ledger's consumer for these messages"
        )));
    }
    let payload: wire::Payload = rmp_serde::from_slice(&value.0)
        .map_err(|e| malformed(&format!("payload (QueueData[{index}].Value)"), e))?;
    if let Some(key) = payload.outcome_backed() {
        return Err(DecodeError::Unsupported(format!(
            "QueueData[{index}] is an outcome-backed payload ({key}): the ledger's consumer \
             proves its Redis evidence and finalises a revert claim around the write, which a \
             bulk recorder cannot do; replay it to the ledger's consumer"
        )));
    }
    let legacy = payload.version.is_none();
    let annotation_only = payload.annotation_only();
    let Some(transaction) = payload.transaction else {
        return Err(DecodeError::Malformed {
            format: "midaz",
            detail: format!(
                "payload (QueueData[{index}].Value) has no Transaction: nothing to write"
            ),
        });
    };
    let bookkeeping = Bookkeeping {
        backup_status: backup_status(&transaction.status.code, payload.validate.as_ref()),
    };
    let transaction = convert(transaction, annotation_only)
        .map_err(|e| DecodeError::Invalid(entry_error(index, e)))?;
    transaction
        .validate()
        .map_err(|e| DecodeError::Invalid(entry_error(index, e)))?;
    Ok((
        Entry {
            transaction,
            bookkeeping,
        },
        legacy,
    ))
}

/// An entry's error, naming the entry when it is not the only one a producer would send.
fn entry_error(index: usize, error: String) -> String {
    if index == 0 {
        error
    } else {
        format!("QueueData[{index}]: {error}")
    }
}

/// The name of the ledger's engine envelope a `QueueData[i].Value` holds instead of a msgpack
/// payload: JSON (it starts with `{`, never a msgpack map's first byte) with `formatVersion`.
fn nested_engine_envelope(value: &[u8]) -> Option<String> {
    let first = value.iter().find(|b| !b.is_ascii_whitespace())?;
    (*first == b'{')
        .then(|| super::json::engine_envelope(value))
        .flatten()
}

/// The status the ledger's backup entry holds for a message: a new posting (APPROVED, not a
/// commit of a pending one) was stored in the backup as CREATED, before it became APPROVED;
/// anything else under its own status. As the ledger's consumer compares it (case-sensitive
/// APPROVED, and a message without `Validate` keeps its status).
fn backup_status(status: &str, validate: Option<&wire::Validate>) -> CompactString {
    match validate {
        Some(validate) if status == "APPROVED" && !validate.pending => "CREATED".into(),
        _ => status.into(),
    }
}

fn malformed(part: &str, error: rmp_serde::decode::Error) -> DecodeError {
    DecodeError::Malformed {
        format: "midaz",
        detail: format!("{part}: {error}"),
    }
}

fn convert(t: wire::Transaction, annotation_only: bool) -> Result<Transaction, String> {
    let id = uuid("Transaction.ID", &t.id)?;
    let (status, status_description) = match t.status.code.as_str() {
        // The ledger's consumer promotes CREATED postings.
        "CREATED" => ("APPROVED".into(), Some("APPROVED".into())),
        _ => (t.status.code, t.status.description),
    };
    let body = match &t.body {
        Some(dsl) if status == super::model::PENDING && !dsl.is_empty() => {
            Some(JsonText::from_value(&dsl.to_json()))
        }
        _ => None,
    };
    let operations = t
        .operations
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            let op_id = op.id.clone();
            convert_operation(op, annotation_only)
                .map_err(|e| format!("Transaction.Operations[{i}] ({op_id}): {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Transaction {
        id,
        parent_transaction_id: optional_uuid(
            "Transaction.ParentTransactionID",
            t.parent_transaction_id.as_deref(),
        )?,
        description: t.description,
        status: Status {
            code: status,
            description: status_description,
        },
        amount: Some(t.amount.ok_or(
            "Transaction.Amount is nil, but transaction.amount is NOT NULL: the producer must set it",
        )?),
        asset_code: t.asset_code,
        chart_of_accounts_group_name: t.chart_of_accounts_group_name,
        ledger_id: uuid("Transaction.LedgerID", &t.ledger_id)?,
        organization_id: uuid("Transaction.OrganizationID", &t.organization_id)?,
        body,
        route: Some(t.route),
        route_id: optional_uuid("Transaction.RouteID", t.route_id.as_deref())?,
        fees_skipped: t.fees_skipped,
        tracer_skipped: t.tracer_skipped,
        created_at: t.created_at.map_or_else(go_zero_time, |c| c.0),
        updated_at: Some(t.updated_at.map_or_else(go_zero_time, |u| u.0)),
        deleted_at: t.deleted_at.map(|d| d.0),
        operations,
        source: t.source,
        destination: t.destination,
        metadata: t.metadata,
        group_id: optional_uuid("Transaction.GroupID", t.group_id.as_deref())?,
        scheme: t.scheme.filter(|s| !s.is_empty()),
        operational_type_code: t.operational_type_code.filter(|s| !s.is_empty()),
        applied_exception_id: optional_uuid(
            "Transaction.AppliedExceptionID",
            t.applied_exception_id.as_deref(),
        )?,
    })
}

/// A decimal a NOT NULL column needs, or why it is refused.
fn required(
    value: Option<super::Decimal>,
    field: std::fmt::Arguments<'_>,
    column: std::fmt::Arguments<'_>,
) -> Result<super::Decimal, String> {
    value.ok_or_else(|| {
        format!(
            "{field} is nil, but operation.{column} is NOT NULL (refused rather than stored as 0)"
        )
    })
}

/// One side of an operation's balances (`side`: `Balance` or `BalanceAfter`, its columns ending
/// in `suffix`). `annotation_only` (the newer line's `EffectMode: ANNOTATION_ONLY`: a NOTED
/// annotation, which moves no balance): a missing balance is zero, as the ledger's annotation
/// legs carry it; otherwise a nil balance is refused.
fn balance(
    b: wire::Balance,
    side: &str,
    suffix: &str,
    annotation_only: bool,
) -> Result<Balance, String> {
    let amount = |value: Option<super::Decimal>, field: &str, column: &str| match value {
        None if annotation_only => Ok(zero()),
        value => required(
            value,
            format_args!("{side}.{field}"),
            format_args!("{column}{suffix}"),
        ),
    };
    Ok(Balance {
        available: Some(amount(b.available, "Available", "available_balance")?),
        on_hold: Some(amount(b.on_hold, "OnHold", "on_hold_balance")?),
        version: b.version,
        overdraft_used: Some(b.overdraft_used.unwrap_or_else(zero)),
    })
}

/// An operation's row (see [`balance`] for `annotation_only`).
fn convert_operation(op: wire::Operation, annotation_only: bool) -> Result<Operation, String> {
    let amount = required(
        op.amount.value,
        format_args!("Amount.Value"),
        format_args!("amount"),
    )?;
    let before = balance(op.balance, "Balance", "", annotation_only)?;
    let after = balance(op.balance_after, "BalanceAfter", "_after", annotation_only)?;
    // Written directly: a JSON tree per operation would cost a dozen allocations.
    let snapshot = format!(
        "{{\"overdraftUsedAfter\":{},\"overdraftUsedBefore\":{}}}",
        serde_json::Value::from(op.snapshot.overdraft_used_after.as_str()),
        serde_json::Value::from(op.snapshot.overdraft_used_before.as_str()),
    );
    Ok(Operation {
        id: uuid("ID", &op.id)?,
        transaction_id: uuid("TransactionID", &op.transaction_id)?,
        description: op.description,
        kind: op.kind,
        asset_code: op.asset_code,
        chart_of_accounts: op.chart_of_accounts,
        amount: Some(Amount {
            value: Some(amount),
        }),
        balance: Some(before),
        balance_after: Some(after),
        status: Status {
            code: op.status.code,
            description: op.status.description,
        },
        account_id: uuid("AccountID", &op.account_id)?,
        account_alias: op.account_alias,
        balance_key: Some(op.balance_key),
        balance_id: uuid("BalanceID", &op.balance_id)?,
        organization_id: uuid("OrganizationID", &op.organization_id)?,
        ledger_id: uuid("LedgerID", &op.ledger_id)?,
        route: Some(op.route),
        route_id: optional_uuid("RouteID", op.route_id.as_deref())?,
        route_code: op.route_code,
        route_description: op.route_description,
        balance_affected: Some(op.balance_affected),
        direction: Some(op.direction),
        snapshot: Some(JsonText(snapshot)),
        created_at: op.created_at.map_or_else(go_zero_time, |c| c.0),
        updated_at: Some(op.updated_at.map_or_else(go_zero_time, |u| u.0)),
        deleted_at: op.deleted_at.map(|d| d.0),
        metadata: op.metadata,
    })
}

fn uuid(field: &str, text: &str) -> Result<Uuid, String> {
    Uuid::try_parse(text).map_err(|_| format!("{field} {text:?} is not a uuid"))
}

/// A nil or empty `*string` id is NULL.
fn optional_uuid(field: &str, text: Option<&str>) -> Result<Option<Uuid>, String> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => uuid(field, text).map(Some),
    }
}

fn zero() -> super::Decimal {
    super::Decimal::from_i64(0)
}

/// Go's zero `time.Time`, what a missing timestamp key decodes to in the ledger.
fn go_zero_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(-62_135_596_800, 0).expect("0001-01-01 is in range")
}
