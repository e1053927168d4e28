//! A publisher of realistic ledger transactions, for demos, tests and benchmarks.
//!
//! Messages are persistent and published with publisher confirms: when `publish` returns, the
//! broker has them all.

use chrono::Utc;
use lapin::{
    BasicProperties, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{
    broker,
    message::{Amount, Balance, Format, Operation, Status, Transaction},
};

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub count: usize,
    pub operations: usize,
    /// Percentage (0..=100) of messages that repeat an earlier transaction (a redelivery).
    pub duplicate_percent: u8,
    /// Undecodable or invalid messages, spread among the others.
    pub invalid: usize,
    pub format: Format,
}

/// What was published.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub messages: usize,
    pub unique_transactions: usize,
    pub duplicates: usize,
    pub invalid: usize,
    pub operations_per_transaction: usize,
}

/// A realistic transaction: one debit and `operations - 1` credits, time-ordered ids.
pub fn sample_transaction(operations: usize) -> Transaction {
    let id = Uuid::now_v7();
    let now = Utc::now();
    let (ledger, organization) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let cents = i64::from(fastrand::u32(100..10_000_000));
    let amount = Decimal::new(cents, 2);
    let approved = Status {
        code: "APPROVED".into(),
        description: None,
    };
    let operations = (0..operations)
        .map(|i| {
            let debit = i == 0;
            let account = Uuid::from_u128(0xa000 + fastrand::u128(0..1000));
            Operation {
                id: Uuid::now_v7(),
                transaction_id: id,
                description: if debit {
                    "debit".into()
                } else {
                    "credit".into()
                },
                kind: if debit {
                    "DEBIT".into()
                } else {
                    "CREDIT".into()
                },
                asset_code: "BRL".into(),
                chart_of_accounts: "1000".into(),
                amount: Some(Amount {
                    value: Some(amount),
                }),
                balance: Some(Balance {
                    available: Some(Decimal::new(100_000_000, 2)),
                    on_hold: Some(Decimal::ZERO),
                    version: Some(7),
                }),
                balance_after: Some(Balance {
                    available: Some(
                        Decimal::new(100_000_000, 2) + if debit { -amount } else { amount },
                    ),
                    on_hold: Some(Decimal::ZERO),
                    version: Some(8),
                }),
                status: approved.clone(),
                account_id: account,
                account_alias: format!("@account-{}", account.as_u128() - 0xa000),
                balance_key: Some("default".into()),
                balance_id: Uuid::from_u128(0xb000 + account.as_u128()),
                organization_id: organization,
                ledger_id: ledger,
                route: Some("transfer".into()),
                route_id: None,
                balance_affected: Some(true),
                direction: Some(if debit {
                    "debit".into()
                } else {
                    "credit".into()
                }),
                created_at: now,
                updated_at: Some(now),
                deleted_at: None,
            }
        })
        .collect();
    Transaction {
        id,
        parent_transaction_id: None,
        description: format!("Payment {}", fastrand::u32(..)),
        status: approved,
        amount: Some(amount),
        asset_code: "BRL".into(),
        chart_of_accounts_group_name: "payments".into(),
        ledger_id: ledger,
        organization_id: organization,
        route: Some("transfer".into()),
        route_id: None,
        created_at: now,
        updated_at: Some(now),
        deleted_at: None,
        operations,
    }
}

/// Encodes a transaction as a message body.
pub fn encode(transaction: &Transaction, format: Format) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(transaction).expect("a transaction serializes"),
        Format::Msgpack => rmp_serde::to_vec_named(transaction).expect("a transaction serializes"),
    }
}

pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::Msgpack => "application/msgpack",
    }
}

/// One body that the recorder must reject, in turn: malformed, mismatched, negative, empty.
fn invalid_body(i: usize) -> Vec<u8> {
    match i % 4 {
        0 => b"{\"id\": \"not-json".to_vec(),
        1 => {
            let mut t = sample_transaction(2);
            t.operations[1].transaction_id = Uuid::now_v7();
            encode(&t, Format::Json)
        }
        2 => {
            let mut t = sample_transaction(1);
            t.amount = Some(Decimal::new(-1, 0));
            encode(&t, Format::Json)
        }
        _ => b"{}".to_vec(),
    }
}

/// Publishes raw bodies to `queue` with confirms; bodies are `(bytes, content_type)`.
pub async fn publish_bodies(
    connection: &Connection,
    queue: &str,
    bodies: impl IntoIterator<Item = (Vec<u8>, &'static str)>,
) -> Result<usize, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut confirms = Vec::with_capacity(1024);
    let mut sent = 0;
    for (i, (body, content_type)) in bodies.into_iter().enumerate() {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(content_type.into())
            .with_message_id(format!("msg-{i}").into());
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?,
        );
        sent += 1;
        if confirms.len() == 1024 {
            for confirm in confirms.drain(..) {
                confirm.await?;
            }
        }
    }
    for confirm in confirms {
        confirm.await?;
    }
    let _ = channel.close(200, "published".into()).await;
    Ok(sent)
}

/// Publishes according to `plan`; the queue is declared (durable) when missing.
pub async fn publish(
    url: &str,
    queue: &str,
    plan: &PublishPlan,
) -> Result<Published, lapin::Error> {
    let connection = broker::connect(url, &format!("{queue}-publisher")).await?;
    broker::ensure_queue(&connection, queue).await?;
    let mut published = Published {
        operations_per_transaction: plan.operations,
        ..Default::default()
    };
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let every_invalid = plan
        .count
        .checked_div(plan.invalid)
        .map_or(usize::MAX, |n| n.max(1));
    let mut bodies = Vec::with_capacity(plan.count + plan.invalid);
    let mut invalid_left = plan.invalid;
    for i in 0..plan.count {
        let duplicate = !sent.is_empty() && fastrand::u8(0..100) < plan.duplicate_percent;
        let body = if duplicate {
            published.duplicates += 1;
            sent[fastrand::usize(..sent.len())].clone()
        } else {
            published.unique_transactions += 1;
            let body = encode(&sample_transaction(plan.operations), plan.format);
            sent.push(body.clone());
            body
        };
        bodies.push((body, content_type(plan.format)));
        if invalid_left > 0 && i % every_invalid == 0 {
            bodies.push((
                invalid_body(plan.invalid - invalid_left),
                "application/json",
            ));
            invalid_left -= 1;
        }
    }
    for i in 0..invalid_left {
        bodies.push((invalid_body(i), "application/json"));
    }
    published.invalid = plan.invalid;
    published.messages = publish_bodies(&connection, queue, bodies).await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(published)
}
