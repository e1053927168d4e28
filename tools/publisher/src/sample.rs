//! Realistic sample transactions: postings, and PENDING transactions with their commit.

use chrono::{SubsecRound, Utc};
use uuid::Uuid;

use bulk_recorder::message::{Amount, Balance, Decimal, Operation, Status, Transaction};

fn cents(value: i64) -> Decimal {
    Decimal::parse(&format!("{}.{:02}", value / 100, value % 100)).expect("a decimal")
}

fn status(code: &str) -> Status {
    Status {
        code: code.into(),
        description: Some(code.into()),
    }
}

/// One leg of `transaction`: `kind` (DEBIT, CREDIT, ON_HOLD...) of `amount_cents`.
fn leg(transaction: &Transaction, kind: &str, direction: &str, amount_cents: i64) -> Operation {
    let account = Uuid::from_u128(0xa000 + fastrand::u128(0..1000));
    let balance = 10_000_000i64;
    let delta = if direction == "debit" {
        -amount_cents
    } else {
        amount_cents
    };
    Operation {
        id: Uuid::now_v7(),
        transaction_id: transaction.id,
        description: transaction.description.clone(),
        kind: kind.into(),
        asset_code: transaction.asset_code.clone(),
        chart_of_accounts: "1000".into(),
        amount: Some(Amount {
            value: Some(cents(amount_cents)),
        }),
        balance: Some(Balance {
            available: Some(cents(balance)),
            on_hold: Some(Decimal::from_i64(0)),
            version: Some(7),
            overdraft_used: None,
        }),
        balance_after: Some(Balance {
            available: Some(cents(balance + delta)),
            on_hold: Some(Decimal::from_i64(0)),
            version: Some(8),
            overdraft_used: None,
        }),
        status: Status::default(),
        account_id: account,
        account_alias: format!("@account-{}", account.as_u128() - 0xa000).into(),
        balance_key: Some("default".into()),
        balance_id: Uuid::from_u128(0xb000 + account.as_u128()),
        organization_id: transaction.organization_id,
        ledger_id: transaction.ledger_id,
        route: Some("transfer".into()),
        route_id: None,
        route_code: None,
        route_description: None,
        balance_affected: Some(true),
        direction: Some(direction.into()),
        snapshot: None,
        created_at: transaction.created_at,
        updated_at: transaction.updated_at,
        deleted_at: None,
        metadata: None,
    }
}

fn header(code: &str) -> Transaction {
    // What PostgreSQL keeps, so that a decoded sample equals the one encoded.
    let now = Utc::now().trunc_subsecs(6);
    Transaction {
        id: Uuid::now_v7(),
        parent_transaction_id: None,
        description: format!("Payment {}", fastrand::u32(..)).into(),
        status: status(code),
        amount: Some(cents(i64::from(fastrand::u32(100..10_000_000)))),
        asset_code: "BRL".into(),
        chart_of_accounts_group_name: "payments".into(),
        ledger_id: Uuid::from_u128(1),
        organization_id: Uuid::from_u128(2),
        body: None,
        route: Some("transfer".into()),
        route_id: None,
        fees_skipped: false,
        tracer_skipped: false,
        created_at: now,
        updated_at: Some(now),
        deleted_at: None,
        operations: Vec::new(),
        source: None,
        destination: None,
        metadata: None,
        group_id: None,
        scheme: None,
        operational_type_code: None,
        applied_exception_id: None,
    }
}

fn amount_cents(t: &Transaction) -> i64 {
    let text = t
        .amount
        .as_ref()
        .expect("sample amounts are set")
        .to_string();
    let (units, fraction) = text.split_once('.').unwrap_or((&text, "0"));
    units.parse::<i64>().expect("units") * 100
        + format!("{fraction:0<2}").parse::<i64>().expect("cents")
}

/// An APPROVED posting: one debit and `operations - 1` credits, time-ordered ids.
pub fn sample_transaction(operations: usize) -> Transaction {
    let mut t = header("APPROVED");
    let total = amount_cents(&t);
    t.operations = (0..operations)
        .map(|i| {
            if i == 0 {
                leg(&t, "DEBIT", "debit", total)
            } else {
                leg(&t, "CREDIT", "credit", total)
            }
        })
        .collect();
    with_accounts(&mut t);
    t
}

/// The accounts the ledger's API names (`source`, `destination`), from the legs.
fn with_accounts(t: &mut Transaction) {
    let aliases = |direction: &str| {
        t.operations
            .iter()
            .filter(|o| o.direction.as_deref() == Some(direction))
            .map(|o| o.account_alias.clone())
            .collect::<Vec<_>>()
    };
    t.source = Some(aliases("debit"));
    t.destination = Some(aliases("credit"));
}

/// Metadata as a ledger's users attach it: on the transaction (an invoice, a channel) and on
/// its first operation.
pub fn with_metadata(t: &mut Transaction) {
    let invoice = format!("INV-{}", fastrand::u32(1000..99999));
    t.metadata = serde_json::json!({"invoice": invoice, "channel": "api", "lines": 2})
        .as_object()
        .cloned();
    if let Some(first) = t.operations.first_mut() {
        first.metadata = serde_json::json!({"line": 1}).as_object().cloned();
    }
}

/// A PENDING transaction (its source held: one ON_HOLD leg) and its commit (the same
/// transaction, APPROVED, with the debit and `operations - 1` credit legs), as the reference
/// ledger publishes them.
pub fn pending_and_commit(operations: usize) -> (Transaction, Transaction) {
    let mut pending = header("PENDING");
    let total = amount_cents(&pending);
    pending.body = Some(bulk_recorder::message::JsonText::from_value(
        &serde_json::json!({
            "description": pending.description,
            "pending": true,
            "send": {"asset": pending.asset_code, "value": pending.amount},
        }),
    ));
    pending.operations = vec![leg(&pending, "ON_HOLD", "debit", total)];
    with_accounts(&mut pending);
    let mut commit = pending.clone();
    commit.status = status("APPROVED");
    commit.body = None;
    commit.updated_at = Some(Utc::now().trunc_subsecs(6));
    commit.operations = (0..operations.max(1))
        .map(|i| {
            if i == 0 {
                leg(&commit, "DEBIT", "debit", total)
            } else {
                leg(&commit, "CREDIT", "credit", total)
            }
        })
        .collect();
    with_accounts(&mut commit);
    (pending, commit)
}
