//! msgpack bodies written by other encoders than the project's own: built value by value with
//! `rmpv`, the way a Python, Go or Node.js producer lays them out.

use bulk_recorder::message::{Decoded, Format, Transaction, decode};
use rmpv::Value;

const LIMIT: usize = 1 << 20;

const ID: &str = "0193a6a4-5c3e-7b1e-9f2a-6d1c2b3a4f50";
const OP_ID: &str = "0193a6a4-5c3e-7b1e-9f2a-6d1c2b3a4f51";
const LEDGER: &str = "0193a6a4-0000-7000-8000-000000000001";
const ORG: &str = "0193a6a4-0000-7000-8000-000000000002";

fn uuid_bin(text: &str) -> Value {
    Value::Binary(text.parse::<uuid::Uuid>().unwrap().as_bytes().to_vec())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// The msgpack timestamp extension (type -1) in its 64-bit form.
fn timestamp64(seconds: u64, nanos: u32) -> Value {
    Value::Ext(
        -1,
        ((u64::from(nanos) << 34) | seconds).to_be_bytes().to_vec(),
    )
}

/// What a generic producer writes: ids and decimals as strings, timestamps as text.
fn transaction(id: Value, amount: Value, created_at: Value) -> Value {
    map(vec![
        ("id", id),
        ("parentTransactionId", Value::Nil),
        ("description", Value::from("Payment 42")),
        ("status", map(vec![("code", Value::from("APPROVED"))])),
        ("amount", amount),
        ("assetCode", Value::from("BRL")),
        ("chartOfAccountsGroupName", Value::Nil),
        ("ledgerId", Value::from(LEDGER)),
        ("organizationId", Value::from(ORG)),
        ("createdAt", created_at),
        ("metadata", map(vec![("invoice", Value::from("A-17"))])),
        (
            "operations",
            Value::Array(vec![map(vec![
                ("id", Value::from(OP_ID)),
                ("transactionId", Value::from(ID)),
                ("type", Value::from("DEBIT")),
                ("assetCode", Value::from("BRL")),
                ("amount", map(vec![("value", Value::from("1500.25"))])),
                (
                    "balance",
                    map(vec![
                        ("available", Value::from(9000)),
                        ("onHold", Value::from(0)),
                        ("version", Value::from(7)),
                    ]),
                ),
                (
                    "accountId",
                    uuid_bin("0193a6a4-0000-7000-8000-0000000000a1"),
                ),
                ("accountAlias", Value::from("@alice")),
                (
                    "balanceId",
                    Value::from("0193a6a4-0000-7000-8000-0000000000b1"),
                ),
                ("organizationId", Value::from(ORG)),
                ("ledgerId", Value::from(LEDGER)),
                ("createdAt", Value::from("2026-11-24T10:00:00Z")),
            ])]),
        ),
    ])
}

fn encode(value: &Value) -> Vec<u8> {
    let mut body = Vec::new();
    rmpv::encode::write_value(&mut body, value).unwrap();
    body
}

fn decoded(value: &Value) -> Transaction {
    let body = encode(value);
    assert_eq!(
        bulk_recorder::message::detect(&body).unwrap(),
        Format::Msgpack
    );
    match decode(&body, None, LIMIT).unwrap() {
        Decoded::Transactions {
            mut entries,
            format,
        } => {
            assert_eq!(format, "msgpack");
            assert_eq!(entries.len(), 1);
            entries.remove(0).transaction
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ids_and_decimals_as_strings_decode_like_the_documented_shape() {
    let t = decoded(&transaction(
        Value::from(ID),
        Value::from("1500.25"),
        Value::from("2026-11-24T10:00:00.123456789-03:00"),
    ));
    assert_eq!(t.id.to_string(), ID);
    assert_eq!(t.amount.unwrap().to_string(), "1500.25");
    assert_eq!(
        t.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "2026-11-24T13:00:00.123456Z"
    );
    assert_eq!(t.chart_of_accounts_group_name, "", "nil is absent");
    let op = &t.operations[0];
    assert_eq!(op.status.code, "", "an operation may come without a status");
    assert_eq!(
        op.account_id.to_string(),
        "0193a6a4-0000-7000-8000-0000000000a1"
    );
    let balance = op.balance.as_ref().unwrap();
    assert_eq!(balance.available.as_ref().unwrap().to_string(), "9000");
    assert_eq!(balance.version, Some(7));
}

#[test]
fn ids_as_16_byte_bin_and_amounts_as_numbers() {
    for (amount, expected) in [
        (Value::from(1500), "1500"),
        (Value::from(-0), "0"),
        (Value::F64(1500.25), "1500.25"),
        (Value::F32(0.5), "0.5"),
        (Value::from(u64::MAX), "18446744073709551615"),
    ] {
        let t = decoded(&transaction(
            uuid_bin(ID),
            amount,
            Value::from("2026-11-24T10:00:00Z"),
        ));
        assert_eq!(t.id.to_string(), ID);
        assert_eq!(t.amount.unwrap().to_string(), expected);
    }
}

#[test]
fn timestamps_in_all_three_extension_forms() {
    let cases = [
        (
            Value::Ext(-1, 1_784_549_100u32.to_be_bytes().to_vec()),
            "2026-07-20T12:05:00.000000Z",
        ),
        (
            timestamp64(1_784_549_100, 250_999_999),
            "2026-07-20T12:05:00.250999Z",
        ),
        (
            Value::Ext(-1, {
                let mut data = 5u32.to_be_bytes().to_vec();
                data.extend_from_slice(&(-1i64).to_be_bytes());
                data
            }),
            "1969-12-31T23:59:59.000000Z",
        ),
    ];
    for (created_at, expected) in cases {
        let t = decoded(&transaction(Value::from(ID), Value::from("1"), created_at));
        assert_eq!(
            t.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            expected
        );
    }
}

#[test]
fn shopspring_binary_decimals_from_a_go_producer() {
    // 250.00 as Go's shopspring/decimal MarshalBinary writes it.
    let go = Value::Binary(vec![0xff, 0xff, 0xff, 0xfe, 0x02, 0x61, 0xa8]);
    let t = decoded(&transaction(
        Value::from(ID),
        go,
        Value::from("2026-11-24T10:00:00Z"),
    ));
    assert_eq!(t.amount.unwrap().to_string(), "250");
}

#[test]
fn what_no_encoder_means_as_an_id_or_a_time_is_refused_naming_the_value() {
    let cases = [
        (
            transaction(
                Value::Binary(vec![1, 2, 3]),
                Value::from("1"),
                Value::from("2026-11-24T10:00:00Z"),
            ),
            "16 bytes",
        ),
        (
            transaction(Value::from(ID), Value::from("1"), Value::Ext(5, vec![0; 4])),
            "type 5",
        ),
        (
            transaction(Value::from(ID), Value::from("1"), Value::from(17)),
            "timestamp",
        ),
        (
            transaction(
                Value::from(ID),
                Value::Boolean(true),
                Value::from("2026-11-24T10:00:00Z"),
            ),
            "decimal",
        ),
    ];
    for (value, expected) in cases {
        let error = decode(&encode(&value), None, LIMIT).unwrap_err();
        assert_eq!(error.reason(), "malformed");
        assert!(error.to_string().contains(expected), "{error}");
    }
}
