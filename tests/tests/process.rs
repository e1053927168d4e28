//! The `bulk-recorder` binary as a process: start-up errors, SIGTERM, kill -9, and its HTTP
//! endpoints.

use std::{collections::BTreeSet, time::Duration};

use bulk_recorder::message::Format;
use bulk_recorder_e2e::*;
use bulk_recorder_publish::sample_transaction;
use tokio::process::{Child, Command};

fn spawn(db: &TestDb, queue: &TestQueue, port: u16, overrides: &[(&str, &str)]) -> Child {
    let mut vars = env(db, queue, overrides);
    vars.insert("METRICS_ADDR".into(), format!("127.0.0.1:{port}"));
    spawn_recorder(vars)
}

async fn scrape(port: u16, name: &str) -> f64 {
    match http_get(port, "/metrics").await {
        Some((200, body)) => metric(&body, name).unwrap_or(0.0),
        _ => 0.0,
    }
}

#[tokio::test]
async fn an_invalid_setting_stops_start_up_with_one_line_naming_it() {
    let output = Command::new(recorder_binary())
        .env_clear()
        .env("RABBITMQ_URL", "amqp://127.0.0.1")
        .env("RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE", "q")
        .env("DATABASE_URL", "postgres://127.0.0.1/test")
        .env("RABBITMQ_NUMBERS_OF_WORKERS", "2")
        .env("RABBITMQ_NUMBERS_OF_PREFETCH", "10")
        .env("BULK_RECORDER_SIZE", "500")
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("bulk-recorder: BULK_RECORDER_SIZE=\"500\" is invalid"),
        "{stderr}"
    );
    assert!(stderr.contains("1..=20"), "{stderr}");

    let output = Command::new(recorder_binary())
        .env_clear()
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("RABBITMQ_URL is required")
    );
}

#[tokio::test]
async fn sigterm_flushes_the_partial_bulk_acknowledges_and_exits_zero() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let port = free_port();
    // A bulk that neither the size (50) nor the timer (60 s) would flush during the test.
    let mut child = spawn(
        &db,
        &queue,
        port,
        &[("BULK_RECORDER_FLUSH_TIMEOUT_MS", "60000")],
    );
    wait_until(Duration::from_secs(30), "ready", || async {
        matches!(http_get(port, "/readyz").await, Some((200, _)))
    })
    .await;
    let transactions: Vec<_> = (0..7).map(|_| sample_transaction(5)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let name = queue.name.clone();
    wait_until(
        Duration::from_secs(30),
        "7 messages held by the recorder",
        || {
            let name = name.clone();
            async move {
                tokio::task::spawn_blocking(move || broker_counts(&name))
                    .await
                    .unwrap()
                    == (0, 7)
            }
        },
    )
    .await;
    assert_eq!(db.count("transaction").await, 0, "held, not yet written");

    terminate_within(&mut child, Duration::from_secs(10), "exits promptly").await;
    assert_eq!(db.count("transaction").await, 7);
    assert_eq!(db.count("operation").await, 35);
    assert_eq!(
        TestQueue::ready(&queue.name).await,
        0,
        "all seven acknowledged"
    );
}

#[tokio::test]
async fn kill_9_mid_drain_then_restart_stores_every_transaction_exactly_once() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let transactions: Vec<_> = (0..3000).map(|_| sample_transaction(5)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let port = free_port();
    let mut first = spawn(&db, &queue, port, &[]);
    wait_until(Duration::from_secs(60), "some committed", || async {
        db.count("transaction").await >= 300
    })
    .await;
    signal(&first, "-KILL");
    first.wait().await.unwrap();
    let after_crash = db.count("transaction").await;

    let port = free_port();
    let mut second = spawn(&db, &queue, port, &[]);
    wait_until(Duration::from_secs(120), "all committed", || async {
        db.count("transaction").await == 3000
    })
    .await;
    let attempted = scrape(port, "bulk_recorder_transactions_attempted_total").await;
    let inserted = scrape(port, "bulk_recorder_transactions_inserted_total").await;
    let ignored = scrape(port, "bulk_recorder_transactions_ignored_total").await;
    signal(&second, "-TERM");
    assert!(second.wait().await.unwrap().success());

    let expected: BTreeSet<_> = transactions.iter().map(|t| t.id).collect();
    assert_eq!(stored_transaction_ids(&db).await, expected);
    assert_eq!(db.count("operation").await, 15_000);
    assert_eq!(
        inserted as i64,
        3000 - after_crash,
        "the second process inserted the rest"
    );
    assert_eq!(
        attempted,
        inserted + ignored,
        "redelivered rows are counted as ignored"
    );
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}

/// A broker that accepts the TCP connection and never answers the AMQP handshake (a host that
/// swallows packets, a wrong port behind a load balancer): the recorder neither hangs there
/// nor at SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_broker_never_answers_exits_at_once() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let mut vars = env(&db, &queue, &[]);
    vars.insert(
        "RABBITMQ_URL".into(),
        format!("amqp://guest:guest@127.0.0.1:{silent_port}/%2f"),
    );
    vars.insert("METRICS_ADDR".into(), format!("127.0.0.1:{}", free_port()));
    let mut child = spawn_recorder(vars);
    tokio::time::sleep(Duration::from_secs(2)).await;
    terminate_within(
        &mut child,
        Duration::from_secs(10),
        "the recorder exits although the broker never answered",
    )
    .await;
    held.abort();
}

/// Events routed nowhere are returned by the broker (they are published `mandatory`, to be
/// counted): lapin would log each as a warning with its whole body. With `RUST_LOG=warn` (a
/// filter that names nothing of lapin's) the log stays free of them.
#[tokio::test]
async fn events_routed_nowhere_are_not_logged_one_by_one_whatever_rust_log_says() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let exchange = bulk_recorder_e2e::exchange::TestExchange::topic("tx-events");
    exchange.declare_unbound().await;
    let log = std::env::temp_dir().join(format!("br-log-{}", uuid::Uuid::new_v4().simple()));
    let mut vars = env(
        &db,
        &queue,
        &[
            (
                "RABBITMQ_TRANSACTION_EVENTS_EXCHANGE",
                exchange.name.as_str(),
            ),
            ("RUST_LOG", "warn"),
        ],
    );
    vars.insert("METRICS_ADDR".into(), format!("127.0.0.1:{}", free_port()));
    let mut child = tokio::process::Command::new(recorder_binary())
        .env_clear()
        .envs(vars)
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("bulk-recorder starts");
    let transactions: Vec<_> = (0..5).map(|_| sample_transaction(1)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    wait_until(
        Duration::from_secs(60),
        "stored and acknowledged",
        || async { db.count("transaction").await == 5 && broker_counts(&queue.name) == (0, 0) },
    )
    .await;
    terminate_within(&mut child, Duration::from_secs(30), "exits").await;
    let logged = std::fs::read_to_string(&log).expect("the log");
    let _ = std::fs::remove_file(&log);
    assert!(
        !logged.contains("returned us a message"),
        "{}",
        &logged[..logged.len().min(2000)]
    );
}
