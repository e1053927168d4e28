//! A RabbitMQ application restart (`rabbitmqctl stop_app` / `start_app`) under load.
//!
//! It stops the whole broker for a few seconds, so it lives in a test binary of its own:
//! `cargo test` runs test binaries one after another, so no other test sees the outage.

use std::{process::Command, time::Duration};

use bulk_recorder_e2e::*;

fn rabbitmqctl(command: &str) {
    let status = Command::new("rabbitmqctl")
        .args(["-q", command])
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {command}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_run_loses_nothing() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let overrides = [
        ("RABBITMQ_NUMBERS_OF_WORKERS", "2"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "10"),
    ];
    let (transactions, recorder) = recorder_mid_drain(&db, &queue, 2000, 2, &overrides, 100).await;

    tokio::task::spawn_blocking(|| rabbitmqctl("stop_app"))
        .await
        .unwrap();
    let outage = async {
        wait_until(
            Duration::from_secs(30),
            "not ready while the broker is down",
            || async { !recorder.health.ready() },
        )
        .await;
    };
    let restarted = tokio::task::spawn_blocking(|| {
        std::thread::sleep(Duration::from_secs(3));
        rabbitmqctl("start_app");
    });
    outage.await;
    restarted.await.unwrap();

    wait_until(Duration::from_secs(120), "all committed", || async {
        db.count("transaction").await == 2000
    })
    .await;
    wait_until(Duration::from_secs(60), "ready again", || async {
        recorder.health.ready()
    })
    .await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;

    assert_stored_exactly_once(&db, &queue, &transactions).await;
    assert_eq!(totals.transactions.inserted, 2000);
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}
