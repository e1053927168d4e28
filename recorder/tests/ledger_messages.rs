//! What the reference ledger's messages carry besides rows, read from bytes its own libraries
//! wrote (`fixtures/midaz-wire/`): the status its Redis backup entry holds, whether metadata
//! (not stored here) came along; and what must never be acknowledged silently: an envelope
//! without `QueueData`, a payload without a transaction, the ledger's newer JSON envelopes.

use std::path::PathBuf;

use bulk_recorder::message::{DecodeError, Decoded, Format, decode};
use rmpv::Value;

const LIMIT: usize = 1 << 20;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/midaz-wire")
}

/// Every fixture that decodes, with its `.expected.json`.
fn cases() -> Vec<(String, Vec<u8>, serde_json::Value)> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap().flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(case) = name.strip_suffix(".msgpack") else {
            continue;
        };
        let expected = fixtures().join(format!("{case}.expected.json"));
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(expected).unwrap()).unwrap();
        if expected["kind"] != "reject" {
            cases.push((case.to_string(), std::fs::read(&path).unwrap(), expected));
        }
    }
    assert!(cases.len() >= 8, "the fixtures were read");
    cases
}

#[test]
fn the_backup_status_is_the_one_the_ledgers_consumer_compares() {
    for (case, body, expected) in cases() {
        let payload = &expected["payload"];
        let status = payload["transaction_status_code"].as_str().unwrap();
        // The ledger's rule: a new posting (APPROVED, validated, not pending) was backed up
        // as CREATED; everything else under its own status.
        let new_posting = status == "APPROVED"
            && payload["validate_present"] == true
            && payload["validate_pending"] == false;
        let backup = if new_posting { "CREATED" } else { status };
        match decode(&body, None, LIMIT).unwrap() {
            Decoded::Transaction { bookkeeping, .. } => {
                assert_eq!(bookkeeping.backup_status, backup, "{case}")
            }
            other => panic!("{case}: {other:?}"),
        }
    }
}

/// JSON values equal as the ledger's document store holds them: numbers compared as doubles.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn the_metadata_the_ledger_keeps_elsewhere_is_decoded_whole() {
    for (case, body, expected) in cases() {
        let expected = &expected["mongo_metadata_not_in_postgres"];
        let Decoded::Transaction { transaction, .. } = decode(&body, None, LIMIT).unwrap() else {
            panic!("{case}")
        };
        let decoded = transaction
            .metadata
            .clone()
            .map_or(serde_json::Value::Null, serde_json::Value::Object);
        assert!(
            same_json(&decoded, &expected["transaction"]),
            "{case}: {decoded} vs {}",
            expected["transaction"]
        );
        let operations: serde_json::Map<String, serde_json::Value> = transaction
            .operations
            .iter()
            .filter_map(|o| {
                let m = o.metadata.clone()?;
                Some((o.id.to_string(), serde_json::Value::Object(m)))
            })
            .collect();
        let expected_ops = expected["operations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(
            same_json(&operations.into(), &expected_ops.into()),
            "{case}: operations"
        );
    }
    let json = |metadata: &str| {
        format!(
            r#"{{"id": "0193a6a4-5c3e-7b1e-9f2a-6d1c2b3a4f50", "status": {{"code": "APPROVED"}},
            "amount": "1", "assetCode": "BRL", "ledgerId": "0193a6a4-0000-7000-8000-000000000001",
            "organizationId": "0193a6a4-0000-7000-8000-000000000002",
            "createdAt": "2026-11-24T10:00:00Z", "metadata": {metadata}}}"#
        )
    };
    for (metadata, carried, stored) in [
        ("{\"invoice\": \"A-17\"}", true, true),
        ("{}", false, true),
        ("null", false, false),
    ] {
        let t = decode(json(metadata).as_bytes(), Some(Format::Json), LIMIT)
            .unwrap()
            .into_transaction()
            .unwrap();
        assert_eq!(t.has_metadata(), carried, "{metadata}");
        assert_eq!(
            t.metadata.is_some(),
            stored,
            "{metadata}: an empty map is a document too"
        );
    }
    let refused = decode(json("\"a string\"").as_bytes(), Some(Format::Json), LIMIT);
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("metadata must be a map")),
        "{refused:?}"
    );
}

/// A ledger envelope, as its Go encoder lays it out, with `entries` as its keys.
fn envelope(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let id = Value::Binary(vec![7; 16]);
    let mut map = vec![
        (Value::from("OrganizationID"), id.clone()),
        (Value::from("LedgerID"), id),
    ];
    map.extend(entries.into_iter().map(|(k, v)| (Value::from(k), v)));
    let mut body = Vec::new();
    rmpv::encode::write_value(&mut body, &Value::Map(map)).unwrap();
    body
}

fn queue_item(payload: Value) -> Value {
    let mut value = Vec::new();
    rmpv::encode::write_value(&mut value, &payload).unwrap();
    Value::Array(vec![Value::Map(vec![
        (Value::from("ID"), Value::Binary(vec![9; 16])),
        (Value::from("Value"), Value::Binary(value)),
    ])])
}

#[test]
fn only_an_empty_queue_data_is_acknowledged_without_rows() {
    for empty in [Value::Array(vec![]), Value::Nil] {
        let body = envelope(vec![("QueueData", empty)]);
        assert_eq!(
            decode(&body, None, LIMIT).unwrap(),
            Decoded::Skip { reason: "empty" }
        );
    }
    let renamed = envelope(vec![("Queue_Data", Value::Array(vec![]))]);
    let error = decode(&renamed, Some(Format::Midaz), LIMIT).unwrap_err();
    assert_eq!(error.reason(), "malformed");
    assert!(error.to_string().contains("no QueueData key"), "{error}");

    let without_transaction = queue_item(Value::Map(vec![(
        Value::from("Version"),
        Value::from("v2"),
    )]));
    let body = envelope(vec![("QueueData", without_transaction)]);
    let error = decode(&body, None, LIMIT).unwrap_err();
    assert_eq!(error.reason(), "malformed");
    assert!(error.to_string().contains("has no Transaction"), "{error}");
}

#[test]
fn the_ledgers_engine_envelopes_are_refused_by_name() {
    let body = std::fs::read(fixtures().join("engine-envelope.json")).unwrap();
    for format in [None, Some(Format::Json)] {
        let error = decode(&body, format, LIMIT).unwrap_err();
        assert!(matches!(error, DecodeError::Unsupported(_)), "{error:?}");
        assert_eq!(error.reason(), "unsupported");
        assert!(
            error
                .to_string()
                .contains("the ledger's write-behind envelope v1 carries engine evidence"),
            "{error}"
        );
    }
    // Its legacy form: the completion record on its own.
    let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let record = serde_json::to_vec(&envelope["record"]).unwrap();
    let error = decode(&record, None, LIMIT).unwrap_err();
    assert_eq!(error.reason(), "unsupported");
    assert!(
        error.to_string().contains("completion record v2"),
        "{error}"
    );
}
