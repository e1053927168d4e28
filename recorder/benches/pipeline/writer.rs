//! The bulk write alone: what the database takes for a bulk, without the broker, decoding or
//! settlement competing for the machine.

use std::{sync::Arc, time::Instant};

use bulk_recorder::{
    message::Transaction,
    store::{BulkWriter, Database, db, statements::layout::Layout},
};
use bulk_recorder_publish::sample_transaction;

use crate::{
    Setting,
    services::{database_url, drop_database, fresh_database},
};

/// Writes `count` transactions in bulks of each setting's size, with its bulks in flight on
/// as many connections, and prints the rate and the bulk latency.
pub async fn alone(count: usize, settings: &[Setting]) {
    let transactions: Arc<Vec<Transaction>> =
        Arc::new((0..count).map(|_| sample_transaction(5)).collect());
    println!(
        "| size | in flight | txn/s | p50 bulk ms | p99 bulk ms |\n|---:|---:|---:|---:|---:|"
    );
    for setting in settings {
        let (size, in_flight) = (setting.size(), setting.4);
        let name = "bench_writer";
        fresh_database(name, None).await;
        let config = bulk_recorder::config::Config::from_vars(
            &[
                ("RABBITMQ_URL", crate::services::amqp_url()),
                ("RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE", "q".into()),
                ("DATABASE_URL", database_url(name)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
        .expect("config");
        let pool = db::connect(&config, in_flight as u32 + 1).await.unwrap();
        let writer = BulkWriter::new(
            Database::standalone(pool.clone(), config.statement_timeout),
            Arc::new(Layout::base()),
            setting.3,
        );
        let bulks: Vec<std::ops::Range<usize>> = (0..count.div_ceil(size))
            .map(|i| i * size..((i + 1) * size).min(count))
            .collect();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let workers = (0..in_flight).map(|_| {
            let (writer, transactions, bulks, next) = (
                writer.clone(),
                transactions.clone(),
                bulks.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(range) = bulks.get(i) else {
                        return latencies;
                    };
                    let bulk: Vec<&Transaction> = transactions[range.clone()].iter().collect();
                    let t = Instant::now();
                    writer.write(&bulk).await.expect("written");
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
            })
        });
        let mut latencies: Vec<f64> = futures::future::join_all(workers)
            .await
            .into_iter()
            .flat_map(|r| r.expect("writer"))
            .collect();
        let seconds = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "| {size} | {in_flight} | {:.0} | {:.2} | {:.2} |",
            count as f64 / seconds,
            at(0.5),
            at(0.99)
        );
        pool.close().await;
        drop_database(name).await;
    }
}
