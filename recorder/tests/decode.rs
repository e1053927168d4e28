//! The message contract: what the recorder accepts, and the clear error for what it refuses.

use bulk_recorder::message::{DecodeError, Format, Transaction, decode};
use bulk_recorder_publish::{encode, sample_transaction};
use serde_json::{Value, json};

const LIMIT: usize = 1 << 20;

/// The reference ledger's transaction, exactly as its API shows it.
fn reference() -> Value {
    json!({
      "id": "0193a6a4-5c3e-7b1e-9f2a-6d1c2b3a4f50",
      "parentTransactionId": null,
      "description": "Payment 42",
      "status": {"code": "APPROVED", "description": null},
      "amount": "1500.25",
      "assetCode": "BRL",
      "chartOfAccountsGroupName": "payments",
      "source": ["@alice"],
      "destination": ["@bob"],
      "ledgerId": "0193a6a4-0000-7000-8000-000000000001",
      "organizationId": "0193a6a4-0000-7000-8000-000000000002",
      "route": "transfer",
      "routeId": null,
      "createdAt": "2026-11-24T10:00:00Z",
      "updatedAt": "2026-11-24T10:00:00Z",
      "deletedAt": null,
      "metadata": {"invoice": "A-17"},
      "operations": [{
          "id": "0193a6a4-5c3e-7b1e-9f2a-6d1c2b3a4f51",
          "transactionId": "0193a6a4-5c3e-7b1e-9f2a-6d1c2b3a4f50",
          "description": "debit alice",
          "type": "DEBIT",
          "assetCode": "BRL",
          "chartOfAccounts": "1000",
          "amount": {"value": "1500.25"},
          "balance": {"available": "9000", "onHold": "0", "version": 7},
          "balanceAfter": {"available": "7499.75", "onHold": "0", "version": 8},
          "status": {"code": "APPROVED", "description": null},
          "accountId": "0193a6a4-0000-7000-8000-0000000000a1",
          "accountAlias": "@alice",
          "balanceKey": "default",
          "balanceId": "0193a6a4-0000-7000-8000-0000000000b1",
          "organizationId": "0193a6a4-0000-7000-8000-000000000002",
          "ledgerId": "0193a6a4-0000-7000-8000-000000000001",
          "route": "transfer",
          "balanceAffected": true,
          "direction": "debit",
          "createdAt": "2026-11-24T10:00:00Z",
          "updatedAt": "2026-11-24T10:00:00Z",
          "deletedAt": null
      }]
    })
}

fn decode_json(value: &Value) -> Result<Transaction, DecodeError> {
    decode_body(&serde_json::to_vec(value).unwrap(), None)
}

fn decode_body(body: &[u8], format: Option<Format>) -> Result<Transaction, DecodeError> {
    decode(body, format, LIMIT).map(|d| d.into_transaction().expect("a transaction"))
}

fn refused(value: Value) -> String {
    decode_json(&value).unwrap_err().to_string()
}

#[test]
fn the_reference_ledgers_transaction_decodes_with_exact_amounts() {
    let t = decode_json(&reference()).expect("the reference shape is accepted");
    assert_eq!(t.amount.unwrap().to_string(), "1500.25");
    assert_eq!(t.status.code, "APPROVED");
    assert_eq!(t.route.as_deref(), Some("transfer"));
    assert!(!t.fees_skipped && t.body.is_none());
    let op = &t.operations[0];
    assert_eq!(
        op.balance_after
            .as_ref()
            .unwrap()
            .available
            .as_ref()
            .unwrap()
            .to_string(),
        "7499.75"
    );
    assert_eq!(op.balance.as_ref().unwrap().version, Some(7));
    assert_eq!(op.kind, "DEBIT");
}

#[test]
fn the_projects_json_and_msgpack_decode_to_the_same_transaction_in_auto_mode() {
    let t = sample_transaction(3);
    for format in [Format::Json, Format::Msgpack] {
        let body = encode(&t, format);
        assert_eq!(bulk_recorder::message::detect(&body).unwrap(), format);
        assert_eq!(
            decode_body(&body, None).unwrap(),
            t,
            "{format:?} in auto mode"
        );
        assert_eq!(
            decode_body(&body, Some(format)).unwrap(),
            t,
            "{format:?} forced"
        );
    }
}

#[test]
fn numbers_are_accepted_as_amounts_and_unknown_fields_are_ignored() {
    let mut v = reference();
    v["amount"] = json!(1500.25);
    v["operations"][0]["amount"]["value"] = json!(1500);
    v["somethingNew"] = json!({"nested": true});
    let t = decode_json(&v).unwrap();
    assert_eq!(t.amount.unwrap().to_string(), "1500.25");
    assert_eq!(
        t.operations[0]
            .amount
            .as_ref()
            .unwrap()
            .value
            .as_ref()
            .unwrap()
            .to_string(),
        "1500"
    );
}

#[test]
fn nulls_for_optional_text_do_not_sink_not_null_columns() {
    let mut v = reference();
    v["description"] = Value::Null;
    v["chartOfAccountsGroupName"] = Value::Null;
    v["operations"][0]["balanceKey"] = Value::Null;
    let t = decode_json(&v).unwrap();
    assert_eq!(t.description, "");
    assert_eq!(
        t.operations[0].balance_key, None,
        "the column default applies"
    );
}

#[test]
fn bodies_that_are_not_a_transaction_are_refused_by_reason() {
    let cases: Vec<(Vec<u8>, Option<Format>, &str)> = vec![
        (Vec::new(), None, "empty"),
        (b"{\"id\":".to_vec(), None, "malformed"),
        (b"\xc1\x00\x01".to_vec(), Some(Format::Msgpack), "malformed"),
        (vec![b' '; LIMIT + 1], None, "too_large"),
        (
            b"{\"description\": \"\xff\xfe\"}".to_vec(),
            None,
            "malformed",
        ),
        // A JSON body when the queue is configured for msgpack, and the other way round.
        (
            serde_json::to_vec(&reference()).unwrap(),
            Some(Format::Msgpack),
            "malformed",
        ),
        (
            encode(&sample_transaction(1), Format::Msgpack),
            Some(Format::Json),
            "malformed",
        ),
    ];
    for (body, format, reason) in cases {
        let error = decode(&body, format, LIMIT).unwrap_err();
        assert_eq!(error.reason(), reason, "{error}");
    }
}

#[test]
fn a_body_that_fits_no_format_names_the_formats_tried() {
    for body in [&b"hello"[..], b"\x93\x01\x02\x03", b"[1,2]"] {
        let error = decode(body, None, LIMIT).unwrap_err();
        assert_eq!(error.reason(), "malformed");
        let text = error.to_string();
        assert!(text.contains("tried json, msgpack and midaz"), "{text}");
    }
}

#[test]
fn the_content_type_does_not_decide_the_format() {
    // The reference ledger labels msgpack bodies application/json; the body decides in auto.
    let t = sample_transaction(1);
    let body = encode(&t, Format::Msgpack);
    assert_eq!(decode_body(&body, None).unwrap(), t);
}

#[test]
fn missing_required_fields_and_bad_ids_name_the_field() {
    let mut v = reference();
    v.as_object_mut().unwrap().remove("ledgerId");
    assert!(refused(v).contains("ledgerId"));

    let mut v = reference();
    v["id"] = json!("not-a-uuid");
    assert!(refused(v).starts_with("malformed JSON"));

    let mut v = reference();
    v["operations"][0]
        .as_object_mut()
        .unwrap()
        .remove("accountAlias");
    assert!(refused(v).contains("accountAlias"));
}

#[test]
fn operations_must_belong_to_their_transaction() {
    let mut v = reference();
    v["operations"][0]["transactionId"] = json!("0193a6a4-5c3e-7b1e-9f2a-6d1c2b3a4f99");
    let error = refused(v);
    assert!(
        error.contains("does not match the transaction's id"),
        "{error}"
    );
}

#[test]
fn amounts_that_are_negative_non_numeric_or_too_precise_are_refused() {
    for (amount, expected) in [
        (json!("-1"), "negative"),
        (json!("ten"), "not a decimal number"),
        (json!(format!("1e{}", 5000)), "more than 1000 digits"),
        (json!(1234567890.1234567), "send it as a string"),
    ] {
        let mut v = reference();
        v["amount"] = amount.clone();
        let error = refused(v);
        assert!(error.contains(expected), "{amount}: {error}");
    }
}

#[test]
fn text_with_nul_characters_is_refused_before_postgresql_sees_it() {
    let mut v = reference();
    v["description"] = json!("pay\u{0}ment");
    assert!(refused(v).contains("description contains a NUL character"));
    let mut v = reference();
    v["operations"][0]["direction"] = json!("sideways-and-up");
    assert!(refused(v).contains("longer than 10 characters"));
}
