//! The ledger's metadata, in its document store, as its consumer writes it: collection
//! `transaction` for a transaction's metadata and `operation` for an operation's, one document
//! per entity `{entity_id, entity_name, metadata, created_at, updated_at}` (the dates are the
//! time of writing), upserted on `{entity_id, entity_name}` with `$setOnInsert`, so that a
//! redelivery, a duplicate or a commit never changes a document. A nil map writes nothing; an
//! empty one writes `metadata: {}`. JSON numbers become doubles, as the ledger's Go decoding
//! makes them.
//!
//! One `update` command per collection per write (`ordered: false`), with the write concern of
//! `MONGODB_URL` when it names one (the server's default otherwise), after the rows are durable
//! and before the messages are acknowledged; a failure holds the messages and is retried.

use std::{collections::BTreeMap, time::Duration};

use mongodb::{
    Client, Database, IndexModel,
    bson::{self, Bson, Document, doc},
    options::ClientOptions,
};
use uuid::Uuid;

use crate::{message::Metadata, telemetry::metrics::Metrics};

/// The ledger's collections, by entity.
pub const TRANSACTION: (&str, &str) = ("transaction", "Transaction");
pub const OPERATION: (&str, &str) = ("operation", "Operation");

/// The longest one command may take before it is retried.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("document store: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("the document store refused some documents: {0}")]
    Refused(String),
    #[error("no answer from the document store within {0:?}")]
    TimedOut(Duration),
}

/// The documents one write leaves, by collection: entity id and metadata.
#[derive(Debug, Default)]
pub struct Documents<'a> {
    pub transactions: BTreeMap<Uuid, &'a Metadata>,
    pub operations: BTreeMap<Uuid, &'a Metadata>,
}

impl Documents<'_> {
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty() && self.operations.is_empty()
    }
}

/// The ledger's document store.
pub struct MetadataStore {
    database: Database,
    write_concern: Option<Bson>,
    /// The ledger's `{entity_id: 1}` index, made once per process when missing.
    indexed: tokio::sync::OnceCell<()>,
}

impl MetadataStore {
    /// Reads `MONGODB_URL` (no connection is made yet: the store being away at start-up must
    /// not keep the recorder from starting).
    pub async fn new(url: &str, database: &str) -> Result<Self, MetadataError> {
        let mut options = ClientOptions::parse(url).await?;
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(5));
        options.app_name.get_or_insert("bulk-recorder".into());
        let write_concern = options
            .write_concern
            .as_ref()
            .map(bson::to_bson)
            .transpose()
            .map_err(|e| MetadataError::Refused(e.to_string()))?;
        let client = Client::with_options(options)?;
        Ok(Self {
            database: client.database(database),
            write_concern,
            indexed: tokio::sync::OnceCell::new(),
        })
    }

    /// Upserts `documents`, one command per collection; counts what was written and what
    /// existed.
    pub async fn store(
        &self,
        documents: &Documents<'_>,
        metrics: &Metrics,
    ) -> Result<(), MetadataError> {
        self.indexed
            .get_or_try_init(|| self.create_indexes())
            .await?;
        let now = bson::DateTime::now();
        for ((collection, entity), entries) in [
            (TRANSACTION, &documents.transactions),
            (OPERATION, &documents.operations),
        ] {
            if entries.is_empty() {
                continue;
            }
            let command = self.update(collection, entity, entries, now);
            let answer = self.call(command).await?;
            let (written, existed) = outcome(&answer, entries.len())?;
            metrics.metadata_documents(collection, "written", written);
            metrics.metadata_documents(collection, "existed", existed);
        }
        Ok(())
    }

    /// The `update` command upserting `entries` into `collection`.
    fn update(
        &self,
        collection: &str,
        entity: &str,
        entries: &BTreeMap<Uuid, &Metadata>,
        now: bson::DateTime,
    ) -> Document {
        let updates: Vec<Document> = entries
            .iter()
            .map(|(id, metadata)| {
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
            })
            .collect();
        let mut command = doc! {"update": collection, "updates": updates, "ordered": false};
        if let Some(concern) = &self.write_concern {
            command.insert("writeConcern", concern.clone());
        }
        command
    }

    /// Runs `command`, at most [`CALL_TIMEOUT`].
    async fn call(&self, command: Document) -> Result<Document, MetadataError> {
        let database = self.database.clone();
        bounded(async move { database.run_command(command).await }).await
    }

    /// The ledger's non-unique `{entity_id: 1}` index on both collections, each at most
    /// [`CALL_TIMEOUT`].
    async fn create_indexes(&self) -> Result<(), MetadataError> {
        for (collection, _) in [TRANSACTION, OPERATION] {
            let index = IndexModel::builder().keys(doc! {"entity_id": 1}).build();
            let collection = self.database.collection::<Document>(collection);
            bounded(async move { collection.create_index(index).await }).await?;
        }
        Ok(())
    }
}

/// `call` on a task of its own, at most [`CALL_TIMEOUT`] (a driver future is not dropped
/// half-way: the task finishes or fails on its own).
async fn bounded<T: Send + 'static>(
    call: impl Future<Output = mongodb::error::Result<T>> + Send + 'static,
) -> Result<T, MetadataError> {
    match tokio::time::timeout(CALL_TIMEOUT, tokio::spawn(call)).await {
        Ok(Ok(answer)) => Ok(answer?),
        Ok(Err(panic)) => std::panic::resume_unwind(panic.into_panic()),
        Err(_) => Err(MetadataError::TimedOut(CALL_TIMEOUT)),
    }
}

/// (written, existed) from an `update` answer, or why documents were refused.
fn outcome(answer: &Document, sent: usize) -> Result<(u64, u64), MetadataError> {
    if let Ok(errors) = answer.get_array("writeErrors")
        && !errors.is_empty()
    {
        return Err(MetadataError::Refused(format!("{errors:?}")));
    }
    if let Ok(error) = answer.get_document("writeConcernError") {
        return Err(MetadataError::Refused(format!("write concern: {error}")));
    }
    let written = answer.get_array("upserted").map_or(0, |u| u.len() as u64);
    Ok((written, (sent as u64).saturating_sub(written)))
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
    fn written_and_existed_are_read_from_the_answer() {
        let answer = doc! {"n": 3, "nModified": 0, "upserted": [{"index": 0, "_id": 1}], "ok": 1.0};
        assert_eq!(outcome(&answer, 3).unwrap(), (1, 2));
        let refused = doc! {"n": 0, "writeErrors": [{"index": 0, "code": 2}], "ok": 1.0};
        assert!(outcome(&refused, 1).is_err());
    }
}
