//! The `update` commands that upsert the ledger's documents, as its driver would send them:
//! split so that no command passes the server's limits (1,000 writes and 16 MiB a command,
//! as the ledger's Go driver splits its bulk writes), and their answers read.

use std::collections::BTreeMap;

use mongodb::bson::{self, Bson, Document, doc};
use uuid::Uuid;

use super::MetadataError;
use crate::message::Metadata;

/// Writes per command: the ledger's chunk, and every server's `maxWriteBatchSize` floor.
pub const MAX_WRITES: usize = 1000;

/// Bytes of updates per command: the server refuses a command over 16 MiB (`maxBsonObjectSize`,
/// plus 16 KiB for the command's own fields); 256 KiB are kept for those.
pub const MAX_UPDATE_BYTES: usize = 16 * 1024 * 1024 - 256 * 1024;

/// One command's worth of upserts into one collection.
#[derive(Debug)]
pub struct Chunk {
    pub collection: &'static str,
    pub entity: &'static str,
    /// The entity ids, in the order of `updates`.
    pub ids: Vec<Uuid>,
    pub updates: Vec<Document>,
}

impl Chunk {
    /// The `update` command, with `write_concern`.
    pub fn command(&self, write_concern: &Bson) -> Document {
        doc! {
            "update": self.collection,
            "updates": self.updates.clone(),
            "ordered": false,
            "writeConcern": write_concern.clone(),
        }
    }
}

/// The upserts of `entries` into `collection`, split into commands within the server's limits.
pub fn chunks(
    (collection, entity): (&'static str, &'static str),
    entries: &BTreeMap<Uuid, &Metadata>,
    now: bson::DateTime,
) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = Chunk {
        collection,
        entity,
        ids: Vec::new(),
        updates: Vec::new(),
    };
    let mut bytes = 0;
    for (id, metadata) in entries {
        let update = upsert(entity, id, metadata, now);
        let size = encoded_len(&update);
        let full = current.ids.len() == MAX_WRITES || bytes + size > MAX_UPDATE_BYTES;
        if full && !current.ids.is_empty() {
            let next = Chunk {
                collection,
                entity,
                ids: Vec::new(),
                updates: Vec::new(),
            };
            chunks.push(std::mem::replace(&mut current, next));
            bytes = 0;
        }
        bytes += size;
        current.ids.push(*id);
        current.updates.push(update);
    }
    if !current.ids.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// `{q, u: {$setOnInsert: document}, upsert: true}`: never changes a document that exists.
fn upsert(entity: &str, id: &Uuid, metadata: &Metadata, now: bson::DateTime) -> Document {
    let id = id.to_string();
    doc! {
        "q": {"entity_id": &id, "entity_name": entity},
        "u": {"$setOnInsert": {
            "entity_id": &id,
            "entity_name": entity,
            "metadata": to_document(metadata),
            "created_at": now,
            "updated_at": now,
        }},
        "upsert": true,
    }
}

fn encoded_len(document: &Document) -> usize {
    let mut bytes = Vec::new();
    document
        .to_writer(&mut bytes)
        .expect("a document encodes into memory");
    // The array index key and its type byte, for its place in `updates`.
    bytes.len() + 8
}

/// The positions (in `updates`) of the documents an `update` answer says it inserted, or why
/// documents were refused.
pub fn upserted(answer: &Document) -> Result<Vec<usize>, MetadataError> {
    if let Ok(errors) = answer.get_array("writeErrors")
        && !errors.is_empty()
    {
        return Err(MetadataError::Refused(format!("{errors:?}")));
    }
    if let Ok(error) = answer.get_document("writeConcernError") {
        return Err(MetadataError::Refused(format!("write concern: {error}")));
    }
    let Ok(upserted) = answer.get_array("upserted") else {
        return Ok(Vec::new());
    };
    Ok(upserted
        .iter()
        .filter_map(|u| match u.as_document()?.get("index")? {
            Bson::Int32(i) => usize::try_from(*i).ok(),
            Bson::Int64(i) => usize::try_from(*i).ok(),
            _ => None,
        })
        .collect())
}

/// A metadata map as a document: JSON numbers as doubles, as the ledger's Go decoding makes
/// them (`float64`).
pub fn to_document(metadata: &Metadata) -> Document {
    metadata
        .iter()
        .map(|(key, value)| (key.clone(), to_bson(value)))
        .collect()
}

fn to_bson(value: &serde_json::Value) -> Bson {
    match value {
        serde_json::Value::Null => Bson::Null,
        serde_json::Value::Bool(b) => Bson::Boolean(*b),
        serde_json::Value::Number(n) => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Bson::String(s.clone()),
        serde_json::Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect()),
        serde_json::Value::Object(map) => Bson::Document(to_document(map)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(text_bytes: usize) -> Metadata {
        let mut m = Metadata::new();
        m.insert("note".into(), "x".repeat(text_bytes).into());
        m
    }

    #[test]
    fn numbers_become_doubles_and_nesting_is_kept() {
        let metadata: Metadata = serde_json::from_str(
            r#"{"id":42,"ratio":12.5,"tags":["a",1],"n":null,"x":{"y":true}}"#,
        )
        .unwrap();
        let document = to_document(&metadata);
        assert_eq!(document.get("id"), Some(&Bson::Double(42.0)));
        assert_eq!(document.get("ratio"), Some(&Bson::Double(12.5)));
        assert_eq!(
            document.get_array("tags").unwrap(),
            &vec![Bson::String("a".into()), Bson::Double(1.0)]
        );
        assert_eq!(document.get("n"), Some(&Bson::Null));
        assert!(document.get_document("x").unwrap().get_bool("y").unwrap());
    }

    #[test]
    fn commands_hold_at_most_a_thousand_writes_and_stay_under_sixteen_mebibytes() {
        let now = bson::DateTime::now();
        let small = metadata(10);
        let many: BTreeMap<Uuid, &Metadata> = (0..2500u128)
            .map(|i| (Uuid::from_u128(i), &small))
            .collect();
        let sizes: Vec<usize> = chunks(super::super::OPERATION, &many, now)
            .iter()
            .map(|c| c.ids.len())
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);

        // 40 documents of 600 KB: 24 MB in all.
        let big = metadata(600_000);
        let heavy: BTreeMap<Uuid, &Metadata> =
            (0..40u128).map(|i| (Uuid::from_u128(i), &big)).collect();
        let split = chunks(super::super::TRANSACTION, &heavy, now);
        assert_eq!(split.iter().map(|c| c.ids.len()).sum::<usize>(), 40);
        assert!(split.len() >= 2);
        let concern = Bson::Document(doc! {"w": "majority"});
        for chunk in &split {
            let mut bytes = Vec::new();
            chunk.command(&concern).to_writer(&mut bytes).unwrap();
            assert!(bytes.len() <= 16 * 1024 * 1024, "{} bytes", bytes.len());
        }
    }

    #[test]
    fn the_inserted_positions_are_read_from_the_answer() {
        let answer = doc! {"n": 3, "nModified": 0, "upserted": [{"index": 0, "_id": 1}, {"index": 2i64, "_id": 2}], "ok": 1.0};
        assert_eq!(upserted(&answer).unwrap(), [0, 2]);
        let refused = doc! {"n": 0, "writeErrors": [{"index": 0, "code": 2}], "ok": 1.0};
        assert!(upserted(&refused).is_err());
    }
}
