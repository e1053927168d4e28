//! PostgreSQL `COPY` of transactions in the recorder's own binary rows: the database's limit,
//! and how tables are preloaded.

use std::time::{Duration, Instant};

use bulk_recorder::{
    message::Transaction,
    store::{
        commit::deadline::Deadline,
        statements::{copy::CopyRows, layout::Layout, merge::Merged},
    },
};
use chrono::Utc;
use sqlx::{Connection as _, PgConnection};

/// Rows per `COPY`, as the best setting's bulks.
pub const BATCH: usize = 1000;

/// The rows of `transactions` in slices of `BATCH`, encoded as the recorder encodes a bulk.
pub fn encode(transactions: &[Transaction]) -> Vec<CopyRows> {
    let layout = Layout::base();
    transactions
        .chunks(BATCH)
        .map(|slice| {
            let refs: Vec<&Transaction> = slice.iter().collect();
            CopyRows::encode(&Merged::new(&refs), &layout, Utc::now())
        })
        .collect()
}

/// Sends encoded slices on `conn`, each in a database transaction of its own.
async fn send_all(conn: &mut PgConnection, slices: Vec<CopyRows>) {
    let layout = Layout::base();
    for rows in slices {
        let mut tx = conn.begin().await.unwrap();
        rows.send(&mut tx, &layout, &Deadline::after(Duration::from_secs(600)))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

/// `COPY` of encoded slices over `connections` connections at once (slices dealt round-robin);
/// returns the seconds from the first row sent to the last commit.
pub async fn timed_copy(url: &str, slices: Vec<CopyRows>, connections: usize) -> f64 {
    let mut conns = Vec::new();
    let mut parts: Vec<Vec<CopyRows>> = (0..connections).map(|_| Vec::new()).collect();
    for _ in 0..connections {
        conns.push(PgConnection::connect(url).await.unwrap());
    }
    for (i, slice) in slices.into_iter().enumerate() {
        parts[i % connections].push(slice);
    }
    let started = Instant::now();
    let writers = parts
        .into_iter()
        .zip(conns.iter_mut())
        .map(|(part, conn)| send_all(conn, part));
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
        send_all(&mut conn, encode(&slice)).await;
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
    send_all(&mut conn, encode(transactions)).await;
    conn.close().await.unwrap();
}
