//! The reference ledger's side of the tests: its tables, its wire fixtures (bodies its own
//! producer wrote, with the rows its own consumer writes) and bodies derived from them with
//! another msgpack encoder (`rmpv`).

use std::path::PathBuf;

use bulk_recorder::message::Decimal;
use rmpv::Value as Msgpack;
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::TestDb;

/// `recorder/tests/fixtures/midaz-wire`: one `NAME.msgpack` body and `NAME.expected.json`.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../recorder/tests/fixtures/midaz-wire")
}

/// One wire fixture.
pub struct Fixture {
    pub body: Vec<u8>,
    pub expected: Value,
}

pub fn fixture(name: &str) -> Fixture {
    let dir = fixture_dir();
    let read = |file: String| {
        std::fs::read(dir.join(&file)).unwrap_or_else(|e| panic!("fixture {file}: {e}"))
    };
    Fixture {
        body: read(format!("{name}.msgpack")),
        expected: serde_json::from_slice(&read(format!("{name}.expected.json")))
            .expect("expected.json"),
    }
}

impl Fixture {
    /// The id of the transaction the message carries.
    pub fn transaction_id(&self) -> Uuid {
        self.expected["envelope"]["queue_data_0_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("queue_data_0_id")
    }

    pub fn transactions(&self) -> &[Value] {
        self.expected["transactions"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }

    pub fn operations(&self) -> &[Value] {
        self.expected["operations"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }
}

/// Creates the ledger's own tables (not the recorder's migrations) in `db`.
pub async fn create_ledger_tables(db: &TestDb) {
    let ddl = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/ledger-tables.sql"),
    )
    .expect("ledger-tables.sql");
    let pool = db.pool().await;
    sqlx::raw_sql(&ddl)
        .execute(&pool)
        .await
        .expect("ledger tables");
    pool.close().await;
}

/// Inserts rows given as `expected.json` rows (column -> value), as the ledger would have.
pub async fn insert_rows(db: &TestDb, table: &str, rows: &[Value]) {
    let pool = db.pool().await;
    for row in rows {
        sqlx::query(&format!(
            "INSERT INTO {table} SELECT * FROM jsonb_populate_record(NULL::{table}, $1::text::jsonb)"
        ))
        .bind(row.to_string())
        .execute(&pool)
        .await
        .expect("prerequisite row");
    }
    pool.close().await;
}

/// Asserts that `table` holds a row equal to `expected` in every column, and has no column
/// `expected` does not name. Decimals compare as numbers, timestamps as instants, JSON as
/// values (PostgreSQL reorders keys), everything else as text.
pub async fn assert_row(db: &TestDb, table: &str, expected: &Value) {
    let id: Uuid = expected["id"].as_str().expect("id").parse().expect("uuid");
    let pool = db.pool().await;
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_name = $1",
    )
    .bind(table)
    .fetch_all(&pool)
    .await
    .expect("columns");
    let row: Vec<(String, Option<String>)> = sqlx::query(&format!(
        "SELECT key, value FROM {table} t, jsonb_each_text(to_jsonb(t)) WHERE t.id = $1"
    ))
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("row")
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    pool.close().await;
    assert!(!row.is_empty(), "{table} {id} is not stored");
    let expected = expected.as_object().expect("a row object");
    let mut columns: Vec<&str> = types.iter().map(|(c, _)| c.as_str()).collect();
    columns.sort_unstable();
    let mut named: Vec<&str> = expected.keys().map(String::as_str).collect();
    named.sort_unstable();
    assert_eq!(columns, named, "{table}: every column is compared");
    for (column, data_type) in &types {
        let actual = row
            .iter()
            .find(|(c, _)| c == column)
            .and_then(|(_, v)| v.as_deref());
        let want = &expected[column];
        let same = match (actual, want) {
            (None, Value::Null) => true,
            (None, _) | (Some(_), Value::Null) => false,
            (Some(a), w) => match data_type.as_str() {
                "numeric" => {
                    Decimal::parse(a).ok() == w.as_str().and_then(|w| Decimal::parse(w).ok())
                }
                "timestamp with time zone" => {
                    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
                    parse(a).is_some() && parse(a) == w.as_str().and_then(parse)
                }
                "jsonb" => serde_json::from_str::<Value>(a).ok().as_ref() == Some(w),
                "bigint" => a.parse::<i64>().ok() == w.as_i64(),
                "boolean" => a.parse::<bool>().ok() == w.as_bool(),
                _ => Some(a) == w.as_str(),
            },
        };
        assert!(
            same,
            "{table} {id} column {column} ({data_type}): stored {actual:?}, expected {want}"
        );
    }
}

fn key(map: &Msgpack, name: &str) -> Option<usize> {
    map.as_map()?
        .iter()
        .position(|(k, _)| k.as_str() == Some(name))
}

/// The value at `name` of a msgpack map.
pub fn get_mut<'a>(map: &'a mut Msgpack, name: &str) -> &'a mut Msgpack {
    let i = key(map, name).unwrap_or_else(|| panic!("no key {name}"));
    match map {
        Msgpack::Map(entries) => &mut entries[i].1,
        _ => unreachable!(),
    }
}

/// Removes `name` from a msgpack map, as an older producer that did not have it.
pub fn remove(map: &mut Msgpack, name: &str) {
    if let (Some(i), Msgpack::Map(entries)) = (key(map, name), map) {
        entries.remove(i);
    }
}

/// Decodes a ledger message with `rmpv`, lets `edit` change its payload, and encodes it again
/// with `rmpv` (compact integers, its own choices: another encoder than the ledger's).
pub fn rewrite_payload(body: &[u8], edit: impl FnOnce(&mut Msgpack)) -> Vec<u8> {
    let mut envelope = rmpv::decode::read_value(&mut &body[..]).expect("envelope");
    let item = match get_mut(&mut envelope, "QueueData") {
        Msgpack::Array(items) => &mut items[0],
        other => panic!("QueueData is {other}"),
    };
    let value = get_mut(item, "Value");
    let bytes = value.as_slice().expect("payload as bin").to_vec();
    let mut payload = rmpv::decode::read_value(&mut &bytes[..]).expect("payload");
    edit(&mut payload);
    let mut inner = Vec::new();
    rmpv::encode::write_value(&mut inner, &payload).expect("payload");
    *value = Msgpack::Binary(inner);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &envelope).expect("envelope");
    out
}

/// A message as the ledger's v3.5 producers wrote it: no `Version`, no `BalancesAfter`, and
/// operations without `Direction`, `Snapshot`, `RouteID`, `RouteCode`, `RouteDescription`.
pub fn as_legacy(body: &[u8]) -> Vec<u8> {
    rewrite_payload(body, |payload| {
        remove(payload, "Version");
        remove(payload, "BalancesAfter");
        let transaction = get_mut(payload, "Transaction");
        if let Msgpack::Array(operations) = get_mut(transaction, "Operations") {
            for op in operations {
                for gone in [
                    "Direction",
                    "Snapshot",
                    "RouteID",
                    "RouteCode",
                    "RouteDescription",
                ] {
                    remove(op, gone);
                }
            }
        }
    })
}

/// The same envelope with an empty `QueueData` (legal: the ledger's consumer acks it).
pub fn with_empty_queue_data(body: &[u8]) -> Vec<u8> {
    let mut envelope = rmpv::decode::read_value(&mut &body[..]).expect("envelope");
    *get_mut(&mut envelope, "QueueData") = Msgpack::Array(Vec::new());
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &envelope).expect("envelope");
    out
}

/// The `QueueData` entries of a ledger message.
pub fn queue_items(body: &[u8]) -> Vec<Msgpack> {
    let mut envelope = rmpv::decode::read_value(&mut &body[..]).expect("envelope");
    match get_mut(&mut envelope, "QueueData") {
        Msgpack::Array(items) => items.clone(),
        other => panic!("QueueData is {other}"),
    }
}

/// One message holding every entry of `bodies` (in order) in its `QueueData`, in the first
/// one's envelope: what the ledger's newer consumer reads whole.
pub fn with_entries(bodies: &[&[u8]]) -> Vec<u8> {
    let mut envelope = rmpv::decode::read_value(&mut &bodies[0][..]).expect("envelope");
    *get_mut(&mut envelope, "QueueData") =
        Msgpack::Array(bodies.iter().flat_map(|b| queue_items(b)).collect());
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &envelope).expect("envelope");
    out
}

/// The message with `keys` added to its payload (the ledger's newer payload keys).
pub fn with_payload_keys(body: &[u8], keys: &[(&str, Msgpack)]) -> Vec<u8> {
    rewrite_payload(body, |payload| {
        if let Msgpack::Map(entries) = payload {
            entries.extend(keys.iter().map(|(k, v)| (Msgpack::from(*k), v.clone())));
        }
    })
}

/// The message with `value` as its `QueueData[0].Value` (bytes that are not a payload).
pub fn with_queue_value(body: &[u8], value: &[u8]) -> Vec<u8> {
    let mut envelope = rmpv::decode::read_value(&mut &body[..]).expect("envelope");
    let item = match get_mut(&mut envelope, "QueueData") {
        Msgpack::Array(items) => &mut items[0],
        other => panic!("QueueData is {other}"),
    };
    *get_mut(item, "Value") = Msgpack::Binary(value.to_vec());
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &envelope).expect("envelope");
    out
}
