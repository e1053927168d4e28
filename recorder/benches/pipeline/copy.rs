//! PostgreSQL `COPY` of transactions: the database's own limit, and how tables are preloaded.

use std::time::Instant;

use bulk_recorder::message::Transaction;
use sqlx::{Connection as _, PgConnection};

fn csv_field(out: &mut String, value: Option<&dyn std::fmt::Display>) {
    if let Some(v) = value {
        out.push('"');
        out.push_str(&v.to_string().replace('"', "\"\""));
        out.push('"');
    }
}

/// One CSV line; `None` is an empty (NULL) field.
fn csv_line(out: &mut String, fields: &[Option<&dyn std::fmt::Display>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, *field);
    }
    out.push('\n');
}

const COPY_TRANSACTIONS: &str = "COPY transaction (id, description, status, \
    status_description, amount, asset_code, chart_of_accounts_group_name, ledger_id, \
    organization_id, route, created_at, updated_at) FROM STDIN WITH (FORMAT csv)";

const COPY_OPERATIONS: &str = "COPY operation (id, transaction_id, description, type, \
    asset_code, amount, available_balance, on_hold_balance, available_balance_after, \
    on_hold_balance_after, balance_version_before, balance_version_after, status, account_id, \
    account_alias, balance_id, balance_key, chart_of_accounts, organization_id, ledger_id, \
    route, direction, balance_affected, snapshot, created_at, updated_at) \
    FROM STDIN WITH (FORMAT csv)";

/// The rows of `transactions` as CSV for the two statements above.
fn csv_rows(transactions: &[Transaction]) -> (String, String) {
    let (mut t_csv, mut o_csv) = (String::new(), String::new());
    let snapshot = r#"{"overdraftUsedBefore":"0","overdraftUsedAfter":"0"}"#;
    for t in transactions {
        let fields: [Option<&dyn std::fmt::Display>; 12] = [
            Some(&t.id),
            Some(&t.description),
            Some(&t.status.code),
            t.status.description.as_ref().map(|d| d as _),
            t.amount.as_ref().map(|a| a as _),
            Some(&t.asset_code),
            Some(&t.chart_of_accounts_group_name),
            Some(&t.ledger_id),
            Some(&t.organization_id),
            t.route.as_ref().map(|r| r as _),
            Some(&t.created_at),
            t.updated_at.as_ref().map(|u| u as _),
        ];
        csv_line(&mut t_csv, &fields);
        for o in &t.operations {
            let before = o.balance.as_ref().expect("sample balances");
            let after = o.balance_after.as_ref().expect("sample balances");
            let (v0, v1) = (before.version.unwrap_or(0), after.version.unwrap_or(0));
            let affected = o.balance_affected.unwrap_or(true);
            let fields: [Option<&dyn std::fmt::Display>; 26] = [
                Some(&o.id),
                Some(&o.transaction_id),
                Some(&o.description),
                Some(&o.kind),
                Some(&o.asset_code),
                o.amount
                    .as_ref()
                    .and_then(|a| a.value.as_ref())
                    .map(|v| v as _),
                before.available.as_ref().map(|v| v as _),
                before.on_hold.as_ref().map(|v| v as _),
                after.available.as_ref().map(|v| v as _),
                after.on_hold.as_ref().map(|v| v as _),
                Some(&v0),
                Some(&v1),
                Some(&o.status.code),
                Some(&o.account_id),
                Some(&o.account_alias),
                Some(&o.balance_id),
                o.balance_key.as_ref().map(|k| k as _),
                Some(&o.chart_of_accounts),
                Some(&o.organization_id),
                Some(&o.ledger_id),
                o.route.as_ref().map(|r| r as _),
                o.direction.as_ref().map(|d| d as _),
                Some(&affected),
                Some(&snapshot),
                Some(&o.created_at),
                o.updated_at.as_ref().map(|u| u as _),
            ];
            csv_line(&mut o_csv, &fields);
        }
    }
    (t_csv, o_csv)
}

/// COPY of `transactions` and their operations on `conn`, as one database transaction.
async fn copy_on(conn: &mut PgConnection, transactions: &[Transaction]) {
    let (t_csv, o_csv) = csv_rows(transactions);
    let mut tx = conn.begin().await.unwrap();
    for (statement, rows) in [(COPY_TRANSACTIONS, t_csv), (COPY_OPERATIONS, o_csv)] {
        let mut copy = tx.copy_in_raw(statement).await.unwrap();
        copy.send(rows.as_bytes()).await.unwrap();
        copy.finish().await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// COPY of `transactions`, split over `connections` connections writing at once, each in
/// slices of `batch` transactions; returns the seconds taken.
pub async fn timed_copy(
    url: &str,
    transactions: &[Transaction],
    connections: usize,
    batch: usize,
) -> f64 {
    let per = transactions.len().div_ceil(connections).max(1);
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(PgConnection::connect(url).await.unwrap());
    }
    let started = Instant::now();
    let writers = transactions
        .chunks(per)
        .zip(conns.iter_mut())
        .map(|(part, conn)| async move {
            for slice in part.chunks(batch) {
                copy_on(conn, slice).await;
            }
        });
    futures::future::join_all(writers).await;
    let seconds = started.elapsed().as_secs_f64();
    for conn in conns {
        conn.close().await.unwrap();
    }
    seconds
}

/// Fills the tables at `url` with `count` sample transactions of `operations` each, generated
/// and copied a slice at a time so that millions fit in memory.
pub async fn preload(url: &str, count: usize, operations: usize) {
    const SLICE: usize = 20_000;
    let mut conn = PgConnection::connect(url).await.unwrap();
    let mut done = 0;
    while done < count {
        let n = SLICE.min(count - done);
        let slice: Vec<Transaction> = (0..n)
            .map(|_| bulk_recorder_publish::sample_transaction(operations))
            .collect();
        copy_on(&mut conn, &slice).await;
        done += n;
    }
    // Statistics as a ledger's tables of this size would have. Not for empty tables: analysed
    // while empty, PostgreSQL plans the foreign key checks as sequential scans until the next
    // ANALYZE, and the run would measure that instead.
    if count > 0 {
        sqlx::query("VACUUM ANALYZE transaction, operation")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}

/// COPY of `transactions` as tables already holding other rows get them (before timing).
pub async fn copy_rows(url: &str, transactions: &[Transaction]) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    for slice in transactions.chunks(20_000) {
        copy_on(&mut conn, slice).await;
    }
    conn.close().await.unwrap();
}
