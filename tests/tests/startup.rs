//! Start-up: a configuration that can never work stops the binary at once (exit 2, one line
//! naming the variable and the fix), and the recorder's consumers are named after their pod.

use std::{collections::BTreeSet, process::Stdio, time::Duration};

use bulk_recorder_e2e::*;
use tokio::process::Command;

/// Runs the binary with `vars` on top of a valid plain configuration: (exit code, stderr).
async fn start_with(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let child = Command::new(recorder_binary())
        .env_clear()
        .env("RABBITMQ_URL", rabbitmq_url())
        .env(
            "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
            "never-consumed",
        )
        .env("DATABASE_URL", postgres_admin_url())
        .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bulk-recorder starts");
    // Only so that a recorder that keeps retrying fails the test instead of blocking the suite.
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("start-up is refused at once, not retried")
        .expect("output");
    (
        output.status.code(),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

#[tokio::test]
async fn a_url_that_can_never_connect_stops_start_up_with_one_line() {
    let cases = [
        (
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:99999/x"),
            "DATABASE_URL=\"postgres://postgres@127.0.0.1:99999/x\" is invalid: invalid port number; expected postgres://",
        ),
        (
            (
                "DATABASE_URL",
                "postgres://app:s3cret@127.0.0.1/x?sslmode=strict",
            ),
            "DATABASE_URL=\"postgres://app:***@127.0.0.1/x?sslmode=strict\" is invalid: ",
        ),
        (
            (
                "DATABASE_URL",
                "postgres://127.0.0.1/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
            ),
            "DATABASE_URL=\"postgres://127.0.0.1/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt\" is invalid: sslrootcert: /nonexistent/ca.crt is not a file; set sslrootcert to a readable PEM file",
        ),
        (
            ("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            "RABBITMQ_URL=\"amqp://guest:***@127.0.0.1:5672/\" is invalid: the vhost is empty (the URL ends with `/`); write the default vhost `/` as %2f",
        ),
        (
            (
                "RABBITMQ_URL",
                "amqps://guest:guest@127.0.0.1:5671/%2f?cacertfile=/nonexistent.pem",
            ),
            "RABBITMQ_URL=\"amqps://guest:***@127.0.0.1:5671/%2f?cacertfile=/nonexistent.pem\" is invalid: cacertfile: /nonexistent.pem is not a file",
        ),
    ];
    for ((var, value), expected) in cases {
        let (code, stderr) = start_with(&[(var, value)]).await;
        assert_eq!(code, Some(2), "{var}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{var}={value}: {stderr}");
        assert!(
            stderr.starts_with(&format!("bulk-recorder: {expected}")),
            "{var}={value}: {stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

#[tokio::test]
async fn the_bulk_switch_is_checked_even_when_async_is_off() {
    let (code, stderr) = start_with(&[
        ("RABBITMQ_TRANSACTION_ASYNC", "false"),
        ("BULK_RECORDER_ENABLED", "sometimes"),
    ])
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "bulk-recorder: BULK_RECORDER_ENABLED=\"sometimes\" is invalid: expected true or false\n"
    );
}

/// The consumer tags the broker lists for `queue`.
fn consumer_tags(queue: &str) -> BTreeSet<String> {
    rabbitmqctl_json("list_consumers", &["queue_name", "consumer_tag"])
        .iter()
        .filter(|row| row["queue_name"] == queue)
        .filter_map(|row| row["consumer_tag"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn consumer_tags_name_the_pod_or_tell_processes_apart() {
    let (test_db, queue) = (TestDb::create().await, TestQueue::new());
    let in_pod = RunningRecorder::start(config(
        &test_db,
        &queue,
        &[
            ("RABBITMQ_NUMBERS_OF_WORKERS", "2"),
            ("POD_NAME", "ledger-recorder-7d9f-x2"),
        ],
    ));
    // Two more recorders without a pod name, in one process (the same process id).
    let first = RunningRecorder::start(config(
        &test_db,
        &queue,
        &[("RABBITMQ_NUMBERS_OF_WORKERS", "2")],
    ));
    let second = RunningRecorder::start(config(
        &test_db,
        &queue,
        &[("RABBITMQ_NUMBERS_OF_WORKERS", "2")],
    ));
    let name = queue.name.clone();
    wait_until(Duration::from_secs(60), "six consumers", || {
        let name = name.clone();
        async move {
            tokio::task::spawn_blocking(move || consumer_tags(&name).len())
                .await
                .unwrap()
                >= 6
        }
    })
    .await;
    let tags = tokio::task::spawn_blocking(move || consumer_tags(&name))
        .await
        .unwrap();
    assert_eq!(
        tags.len(),
        6,
        "every consumer has a tag of its own: {tags:?}"
    );
    for index in 0..2 {
        assert!(
            tags.contains(&format!("bulk-recorder-ledger-recorder-7d9f-x2-{index}")),
            "{tags:?}"
        );
    }
    let pid = format!("-{}-", std::process::id());
    assert!(tags.iter().all(|tag| !tag.contains(&pid)), "{tags:?}");
    for recorder in [in_pod, first, second] {
        recorder.stop().await;
    }
}
