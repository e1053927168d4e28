//! TLS on both sides, exercised: a PostgreSQL cluster of the test's own with `ssl=on` reached
//! with `sslmode=verify-full`, and `amqps://` through a TLS terminator in front of RabbitMQ,
//! each with a CA the test made. A wrong CA or a wrong name is refused at once with a clear
//! error.

use std::{process::Stdio, time::Duration};

use bulk_recorder::{
    broker, config::Config, message::Format, startup::refused_certificate, store::db,
};
use bulk_recorder_e2e::{
    tls::{Certificates, TlsPostgres, TlsTerminator},
    *,
};
use bulk_recorder_publish::sample_transaction;
use sqlx::{Connection as _, PgConnection};
use tokio::process::Command;

/// What the tests need: certificates, the TLS cluster, the TLS broker port.
fn servers() -> Option<(Certificates, TlsPostgres, TlsTerminator)> {
    let certs = Certificates::new();
    let postgres = TlsPostgres::start(&certs)?;
    let broker = TlsTerminator::start(&certs)?;
    Some((certs, postgres, broker))
}

fn verify_full(postgres: &TlsPostgres, ca: &std::path::Path) -> String {
    postgres.url(&format!("sslmode=verify-full&sslrootcert={}", ca.display()))
}

fn recorder_env(
    rabbitmq_url: &str,
    database_url: &str,
    queue: &TestQueue,
) -> Vec<(String, String)> {
    [
        ("RABBITMQ_URL", rabbitmq_url.to_string()),
        (
            "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
            queue.name.clone(),
        ),
        ("DATABASE_URL", database_url.to_string()),
        ("METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs the binary until it exits by itself: (exit code, stderr).
async fn run_until_exit(vars: Vec<(String, String)>) -> (Option<i32>, String) {
    let child = Command::new(recorder_binary())
        .env_clear()
        .envs(vars)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bulk-recorder starts");
    // Only so that a hang fails the test instead of blocking the suite.
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the recorder stops by itself instead of hanging")
        .expect("output");
    (
        output.status.code(),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

#[tokio::test]
async fn the_recorder_stores_through_verified_tls_on_both_sides() {
    let Some((certs, postgres, broker)) = servers() else {
        return;
    };
    let queue = TestQueue::new();
    let transactions: Vec<_> = (0..20).map(|_| sample_transaction(3)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let database_url = verify_full(&postgres, &certs.ca);
    let amqps_url = broker.url(&format!("?cacertfile={}", certs.ca.display()));
    let mut child = Command::new(recorder_binary())
        .env_clear()
        .envs(recorder_env(&amqps_url, &database_url, &queue))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("bulk-recorder starts");

    let count = || async {
        let Ok(mut conn) = PgConnection::connect(&database_url).await else {
            return -1;
        };
        // -1 until the recorder has created the table.
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM transaction")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(-1)
    };
    wait_until(
        Duration::from_secs(60),
        "20 transactions stored",
        || async { count().await == 20 },
    )
    .await;

    // Every connection the recorder holds to the cluster is encrypted.
    let mut conn = PgConnection::connect(&database_url)
        .await
        .expect("verify-full");
    let (connections, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'bulk-recorder'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("pg_stat_ssl");
    assert!(connections > 0, "the recorder is connected");
    assert_eq!(encrypted, connections, "only TLS connections");
    let operations: i64 = sqlx::query_scalar("SELECT count(*) FROM operation")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(operations, 60);

    let pid = child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops")
        .expect("status");
    assert!(status.success(), "{status}");
    assert_eq!(TestQueue::ready(&queue.name).await, 0, "all acknowledged");
}

#[tokio::test]
async fn a_wrong_ca_stops_start_up_with_one_line_naming_the_variable() {
    let Some((certs, postgres, broker)) = servers() else {
        return;
    };
    let queue = TestQueue::new();
    let good_broker = broker.url(&format!("?cacertfile={}", certs.ca.display()));
    let good_database = verify_full(&postgres, &certs.ca);

    let (code, stderr) = run_until_exit(recorder_env(
        &good_broker,
        &verify_full(&postgres, &certs.wrong_ca),
        &queue,
    ))
    .await;
    assert_refused_at_start(code, &stderr, "DATABASE_URL", "set sslrootcert");

    let (code, stderr) = run_until_exit(recorder_env(
        &broker.url(&format!("?cacertfile={}", certs.wrong_ca.display())),
        &good_database,
        &queue,
    ))
    .await;
    assert_refused_at_start(code, &stderr, "RABBITMQ_URL", "set ?cacertfile=");
}

#[tokio::test]
async fn a_name_the_certificate_does_not_hold_is_refused_on_both_sides() {
    let Some((certs, postgres, broker)) = servers() else {
        return;
    };
    let queue = TestQueue::new();
    // The certificate holds the address 127.0.0.1 only, not the name `localhost`.
    let by_name = verify_full(&postgres, &certs.ca).replace("127.0.0.1", "localhost");
    let vars: std::collections::HashMap<_, _> = recorder_env(
        &broker.url(&format!("?cacertfile={}", certs.ca.display())),
        &by_name,
        &queue,
    )
    .into_iter()
    .collect();
    let config = Config::from_vars(&vars).expect("valid configuration");
    let error = db::connect(&config, 1).await.expect_err("refused");
    let reason = refused_certificate(&error).unwrap_or_else(|| panic!("{error}"));
    assert!(
        reason.contains("not valid for name \"localhost\""),
        "{reason}"
    );

    let by_name = broker
        .url(&format!("?cacertfile={}", certs.ca.display()))
        .replace("127.0.0.1", "localhost");
    let error = broker::connect(&by_name, &queue.name)
        .await
        .expect_err("refused");
    let reason = refused_certificate(&error).unwrap_or_else(|| panic!("{error}"));
    assert!(
        reason.contains("not valid for name \"localhost\""),
        "{reason}"
    );

    // Without the test's CA (the system's CAs only), the broker is refused too.
    let error = broker::connect(&broker.url(""), &queue.name)
        .await
        .expect_err("refused");
    let reason = refused_certificate(&error).unwrap_or_else(|| panic!("{error}"));
    assert!(reason.contains("UnknownIssuer"), "{reason}");
}

/// Start-up stopped with exit 2 and one line: `variable`'s server certificate refused, and `fix`.
fn assert_refused_at_start(code: Option<i32>, stderr: &str, variable: &str, fix: &str) {
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let expected = format!(
        "bulk-recorder: {variable}: the server's certificate was refused (invalid peer certificate: UnknownIssuer); {fix}"
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
}
