//! The README's scripts, as its two commands run them back to back (`./scripts/demo.sh`, then
//! `./scripts/test.sh`; `.ci/run` does exactly that): a service the first one started and stops
//! must be gone when it returns, or the second finds it still answering, reuses it, and loses
//! it mid-run.

use std::{path::Path, process::Command};

use bulk_recorder_e2e::{free_port, pg_cluster::TempDir, skip};

#[test]
fn a_document_store_a_script_stops_is_gone_when_it_returns() {
    if std::env::var_os("TEST_SECANTUSD").is_none() {
        skip("TEST_SECANTUSD is not set: ./scripts/test.sh installs SecantusDB and sets it");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let dir = TempDir::new("br-services");
    let script = r#"source scripts/services.sh
ensure_mongodb >/dev/null || exit 3
answers "$MONGO_PORT" || exit 4
stop_started_services >/dev/null
if answers "$MONGO_PORT"; then echo still-answering; else echo gone; fi"#;
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(root)
        .env("BULK_RECORDER_MONGO_PORT", free_port().to_string())
        .env("BULK_RECORDER_MONGO_DIR", &dir.0)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "gone");
}
