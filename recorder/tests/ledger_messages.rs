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
            Decoded::Transactions { entries, .. } => {
                assert_eq!(entries[0].bookkeeping.backup_status, backup, "{case}")
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
        let Some(transaction) = decode(&body, None, LIMIT).unwrap().into_transaction() else {
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

/// A fixture's payload (`QueueData[0].Value`), decoded with `rmpv`.
fn payload_of(name: &str) -> Value {
    let body = std::fs::read(fixtures().join(format!("{name}.msgpack"))).unwrap();
    let envelope = rmpv::decode::read_value(&mut &body[..]).unwrap();
    let item = &field(&envelope, "QueueData").as_array().unwrap()[0];
    let bytes = field(item, "Value").as_slice().unwrap().to_vec();
    rmpv::decode::read_value(&mut &bytes[..]).unwrap()
}

fn field<'a>(map: &'a Value, name: &str) -> &'a Value {
    map.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name}"))
}

fn field_mut<'a>(map: &'a mut Value, name: &str) -> &'a mut Value {
    match map {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {name}")),
        other => panic!("not a map: {other}"),
    }
}

/// `payload` with `keys` added.
fn with_keys(mut payload: Value, keys: &[(&str, Value)]) -> Value {
    if let Value::Map(entries) = &mut payload {
        entries.extend(keys.iter().map(|(k, v)| (Value::from(*k), v.clone())));
    }
    payload
}

/// A ledger message whose `QueueData` holds one entry per payload.
fn message(payloads: &[Value]) -> Vec<u8> {
    let items = payloads
        .iter()
        .map(|payload| {
            let mut value = Vec::new();
            rmpv::encode::write_value(&mut value, payload).unwrap();
            Value::Map(vec![
                (Value::from("ID"), Value::Binary(vec![9; 16])),
                (Value::from("Value"), Value::Binary(value)),
            ])
        })
        .collect();
    envelope(vec![("QueueData", Value::Array(items))])
}

fn transaction_id(payload: &Value) -> String {
    field(field(payload, "Transaction"), "ID")
        .as_str()
        .unwrap()
        .to_string()
}

/// The ledger's newer consumer reads every `QueueData` entry: one message, three transactions,
/// each with the status its Redis backup entry holds.
#[test]
fn every_queue_data_entry_is_read_and_the_message_is_one_unit() {
    let payloads = [
        payload_of("approved"),
        payload_of("pending"),
        payload_of("noted"),
    ];
    let Decoded::Transactions { entries, format } =
        decode(&message(&payloads), None, LIMIT).unwrap()
    else {
        panic!("transactions")
    };
    assert_eq!(format, "midaz");
    let ids: Vec<String> = entries
        .iter()
        .map(|e| e.transaction.id.to_string())
        .collect();
    let expected: Vec<String> = payloads.iter().map(transaction_id).collect();
    assert_eq!(ids, expected);
    let backup: Vec<&str> = entries
        .iter()
        .map(|e| e.bookkeeping.backup_status.as_str())
        .collect();
    assert_eq!(backup, ["CREATED", "PENDING", "NOTED"]);
}

/// One bad entry refuses the message whole, naming the entry.
#[test]
fn a_message_with_a_bad_entry_is_refused_whole_naming_it() {
    let body = message(&[payload_of("approved"), payload_of("nil-decimal")]);
    let error = decode(&body, None, LIMIT).unwrap_err();
    assert_eq!(error.reason(), "invalid");
    assert!(error.to_string().contains("QueueData[1]"), "{error}");
}

/// A payload the ledger's newer line marks outcome-backed: its consumer proves Redis evidence and
/// finalises a revert claim around the write, which a recorder cannot do. Refused by name; an
/// empty key (Go's zero value) is not a mark.
#[test]
fn outcome_backed_payloads_are_unsupported() {
    for key in ["AttemptOwner", "RevertRolloutToken"] {
        let payload = with_keys(payload_of("approved"), &[(key, Value::from("worker-7:42"))]);
        let error = decode(&message(&[payload]), None, LIMIT).unwrap_err();
        assert_eq!(error.reason(), "unsupported", "{key}");
        assert!(error.to_string().contains(key), "{error}");
        assert!(error.to_string().contains("outcome-backed"), "{error}");
    }
    let zero = with_keys(
        payload_of("approved"),
        &[
            ("AttemptOwner", Value::from("")),
            ("RevertRolloutToken", Value::Nil),
        ],
    );
    assert!(decode(&message(&[zero]), None, LIMIT).is_ok());
}

/// An engine envelope (JSON with `formatVersion`) inside a msgpack `QueueData[i].Value` is the
/// ledger's too: `unsupported`, like a bare one, not `malformed`.
#[test]
fn an_engine_envelope_inside_queue_data_is_unsupported() {
    let json = std::fs::read(fixtures().join("engine-envelope.json")).unwrap();
    let body = envelope(vec![(
        "QueueData",
        Value::Array(vec![Value::Map(vec![
            (Value::from("ID"), Value::Binary(vec![9; 16])),
            (Value::from("Value"), Value::Binary(json)),
        ])]),
    )]);
    let error = decode(&body, None, LIMIT).unwrap_err();
    assert_eq!(error.reason(), "unsupported", "{error}");
    assert!(error.to_string().contains("QueueData[0].Value"), "{error}");
}

/// The newer line's other payload keys change nothing in the rows, but `EffectMode:
/// ANNOTATION_ONLY`: a NOTED annotation's legs move no balance, so a leg without balances is
/// written with zeros instead of refused.
#[test]
fn the_newer_payload_keys_are_read_where_they_change_rows() {
    let plain = decode(&message(&[payload_of("approved")]), None, LIMIT).unwrap();
    let newer = with_keys(
        payload_of("approved"),
        &[
            ("EffectModeVersion", Value::from(1)),
            ("EffectMode", Value::from("BALANCE_MUTATION")),
            ("OperationTypeOverride", Value::from("DEBIT")),
            ("RevertRolloutMode", Value::from("legacy")),
            ("RedisGeneration", Value::from(5)),
            ("ExpectedOutcome", Value::from("APPROVED")),
        ],
    );
    assert_eq!(decode(&message(&[newer]), None, LIMIT).unwrap(), plain);

    // A NOTED payload with one leg of the approved one, its balances nil.
    let mut leg = field(field(&payload_of("approved"), "Transaction"), "Operations")
        .as_array()
        .unwrap()[0]
        .clone();
    for side in ["Balance", "BalanceAfter"] {
        for amount in ["Available", "OnHold"] {
            *field_mut(field_mut(&mut leg, side), amount) = Value::Nil;
        }
    }
    let mut noted = payload_of("noted");
    let transaction = field_mut(&mut noted, "Transaction");
    let id = field(transaction, "ID").clone();
    *field_mut(&mut leg, "TransactionID") = id;
    if let Value::Map(entries) = transaction {
        entries.retain(|(k, _)| k.as_str() != Some("Operations"));
        entries.push((Value::from("Operations"), Value::Array(vec![leg])));
    }
    let refused = decode(&message(&[noted.clone()]), None, LIMIT).unwrap_err();
    assert_eq!(refused.reason(), "invalid");
    let annotation = with_keys(noted, &[("EffectMode", Value::from("ANNOTATION_ONLY"))]);
    let stored = decode(&message(&[annotation]), None, LIMIT)
        .unwrap()
        .into_transaction()
        .unwrap();
    let balance = stored.operations[0].balance.as_ref().unwrap();
    assert_eq!(balance.available.as_ref().unwrap().as_str(), "0");
}

/// The later `transaction` columns, as the newer producer names them (Go field names).
#[test]
fn the_later_transaction_columns_are_read_from_each_format() {
    let group = "0198a1c0-9999-7000-8000-000000000001";
    let mut payload = payload_of("approved");
    let transaction = field_mut(&mut payload, "Transaction");
    if let Value::Map(entries) = transaction {
        for (k, v) in [
            ("GroupID", group),
            ("Scheme", "PIX"),
            ("OperationalTypeCode", "P2P"),
            ("AppliedExceptionID", ""),
        ] {
            entries.push((Value::from(k), Value::from(v)));
        }
    }
    let t = decode(&message(&[payload]), None, LIMIT)
        .unwrap()
        .into_transaction()
        .unwrap();
    assert_eq!(t.group_id.unwrap().to_string(), group);
    assert_eq!(t.scheme.as_deref(), Some("PIX"));
    assert_eq!(t.operational_type_code.as_deref(), Some("P2P"));
    assert_eq!(t.applied_exception_id, None, "an empty id is none");

    let json = format!(
        r#"{{"id":"0198a1c0-9999-7000-8000-000000000002","status":{{"code":"APPROVED"}},
        "assetCode":"BRL","ledgerId":"{group}","organizationId":"{group}",
        "createdAt":"2026-11-24T10:00:00Z","groupId":"{group}","scheme":"CARD",
        "operationalTypeCode":"POS","appliedExceptionId":"{group}"}}"#
    );
    let t = decode(json.as_bytes(), None, LIMIT)
        .unwrap()
        .into_transaction()
        .unwrap();
    assert_eq!(
        (t.scheme.as_deref(), t.operational_type_code.as_deref()),
        (Some("CARD"), Some("POS"))
    );
    assert!(t.group_id.is_some() && t.applied_exception_id.is_some());
}
