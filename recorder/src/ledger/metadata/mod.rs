//! The ledger's metadata, in its document store, as its consumer writes it: collection
//! `transaction` for a transaction's metadata and `operation` for an operation's, one document
//! per entity `{entity_id, entity_name, metadata, created_at, updated_at}` (the dates are the
//! time of writing), upserted on `{entity_id, entity_name}` with `$setOnInsert`, so that a
//! redelivery, a duplicate or a commit never changes a document. A nil map writes nothing; an
//! empty one writes `metadata: {}`. JSON numbers become doubles, as the ledger's Go decoding
//! makes them.
//!
//! `update` commands of at most 1,000 upserts and 16 MiB ([`commands`]), `ordered: false`,
//! with the write concern of `MONGODB_URL`, or `w: "majority"` when it names none (a PSA
//! replica set or a server before 5.0 acknowledges `w: 1` writes that a failover rolls back),
//! after the rows are durable and before the messages are acknowledged; a failure holds the
//! messages and is retried ([`crate::pipeline::policy`]).
//!
//! Counted exactly, also when an answer is lost: every write of a bulk carries that bulk's
//! time (unique among this process's bulks, kept across its retries), so a retry finds which
//! of the documents that "existed" its own lost command had written.

mod commands;
mod index;

use std::{
    collections::{BTreeMap, HashSet},
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use mongodb::{
    Client, Database,
    bson::{self, Bson, Document, doc},
    options::{ClientOptions, WriteConcern},
};
use uuid::Uuid;

use commands::Chunk;
pub use commands::to_document;

use crate::{
    message::Metadata,
    pipeline::{
        collector::Pending,
        policy::{Attempt, Step},
    },
    telemetry::{health::Holds, metrics::Metrics, traces},
};

/// The ledger's collections, by entity.
pub const TRANSACTION: (&str, &str) = ("transaction", "Transaction");
pub const OPERATION: (&str, &str) = ("operation", "Operation");

/// A bulk's documents hold its settlement (and the clocks that lead to a dead letter).
pub const STEP: Step = Step {
    name: "store metadata",
    holds: Holds::Settlement,
    slow: Duration::from_secs(1),
};

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

impl<'a> Documents<'a> {
    /// The documents of `messages`, but those of `conflicting` transactions (their messages
    /// changed nothing).
    pub fn of(messages: &'a [Pending], conflicting: &HashSet<Uuid>) -> Self {
        let mut documents = Self::default();
        for t in messages
            .iter()
            .map(|m| &m.transaction)
            .filter(|t| !conflicting.contains(&t.id))
        {
            if let Some(m) = &t.metadata {
                documents.transactions.insert(t.id, m);
            }
            for op in &t.operations {
                if let Some(m) = &op.metadata {
                    documents.operations.insert(op.id, m);
                }
            }
        }
        documents
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty() && self.operations.is_empty()
    }
}

/// The ledger's document store.
pub struct MetadataStore {
    database: Database,
    write_concern: Bson,
    /// The ledger's `{entity_id: 1}` index looked for once per process.
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
            .get_or_insert_with(WriteConcern::majority);
        let write_concern =
            bson::to_bson(write_concern).map_err(|e| MetadataError::Refused(e.to_string()))?;
        let client = Client::with_options(options)?;
        Ok(Self {
            database: client.database(database),
            write_concern,
            indexed: tokio::sync::OnceCell::new(),
        })
    }

    /// The write concern every command carries.
    pub fn write_concern(&self) -> &Bson {
        &self.write_concern
    }

    /// The work of storing `messages`' documents; `None` when they carry none.
    pub fn prepare<'a>(
        &'a self,
        messages: &'a [Pending],
        conflicting: &HashSet<Uuid>,
        metrics: &'a Metrics,
    ) -> Option<StoreDocuments<'a>> {
        let documents = Documents::of(messages, conflicting);
        if documents.is_empty() {
            return None;
        }
        let now = batch_time();
        let chunks = commands::chunks(TRANSACTION, &documents.transactions, now)
            .into_iter()
            .chain(commands::chunks(OPERATION, &documents.operations, now))
            .map(|chunk| (chunk, Sent::NotYet))
            .collect();
        Some(StoreDocuments {
            store: self,
            chunks,
            now,
            metrics,
        })
    }

    /// Runs `command`, at most [`CALL_TIMEOUT`].
    async fn call(&self, command: Document) -> Result<Document, MetadataError> {
        let database = self.database.clone();
        bounded(async move { database.run_command(command).await }).await
    }

    /// Of `chunk`'s documents that its answer did not say it inserted (positions `inserted`),
    /// how many carry `now`: written by an earlier try of this bulk whose answer was lost.
    async fn written_before(
        &self,
        chunk: &Chunk,
        inserted: &[usize],
        now: bson::DateTime,
    ) -> Result<u64, MetadataError> {
        let matched: Vec<String> = chunk
            .ids
            .iter()
            .enumerate()
            .filter(|(i, _)| !inserted.contains(i))
            .map(|(_, id)| id.to_string())
            .collect();
        if matched.is_empty() {
            return Ok(0);
        }
        let filter = doc! {
            "entity_id": {"$in": matched},
            "entity_name": chunk.entity,
            "created_at": now,
        };
        let collection = self.database.collection::<Document>(chunk.collection);
        bounded(async move { collection.count_documents(filter).await }).await
    }
}

/// What is known of a command's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    NotYet,
    /// Sent, its answer lost or refused: some of its documents may be written.
    Unknown,
    Done,
}

/// A bulk's documents, until every command is answered (an answered one is not sent again).
pub struct StoreDocuments<'a> {
    store: &'a MetadataStore,
    chunks: Vec<(Chunk, Sent)>,
    /// This bulk's time: the documents' `created_at` and `updated_at`, on every try.
    now: bson::DateTime,
    metrics: &'a Metrics,
}

impl Attempt for StoreDocuments<'_> {
    type Output = ();
    type Error = MetadataError;

    async fn attempt(&mut self) -> Result<(), MetadataError> {
        traces::step("store metadata", self.store_all()).await
    }
}

impl StoreDocuments<'_> {
    /// Sends the commands not answered yet; counts what each wrote and what existed.
    async fn store_all(&mut self) -> Result<(), MetadataError> {
        let store = self.store;
        store
            .indexed
            .get_or_try_init(|| index::ensure(&store.database))
            .await?;
        for (chunk, sent) in self.chunks.iter_mut().filter(|(_, s)| *s != Sent::Done) {
            let answer = store.call(chunk.command(&store.write_concern)).await;
            let inserted = match answer.and_then(|a| commands::upserted(&a)) {
                Ok(inserted) => inserted,
                Err(error) => {
                    *sent = Sent::Unknown;
                    return Err(error);
                }
            };
            let mut written = inserted.len() as u64;
            if *sent == Sent::Unknown {
                written += store.written_before(chunk, &inserted, self.now).await?;
            }
            let existed = (chunk.ids.len() as u64).saturating_sub(written);
            self.metrics
                .metadata_documents(chunk.collection, "written", written);
            self.metrics
                .metadata_documents(chunk.collection, "existed", existed);
            *sent = Sent::Done;
        }
        Ok(())
    }
}

/// Now, in milliseconds (BSON's precision), later than any earlier bulk of this process.
fn batch_time() -> bson::DateTime {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = bson::DateTime::now().timestamp_millis();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return bson::DateTime::from_millis(next),
            Err(seen) => last = seen,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn majority_unless_the_url_names_a_write_concern() {
        let default = MetadataStore::new("mongodb://127.0.0.1:1", "t")
            .await
            .unwrap();
        assert_eq!(
            default.write_concern(),
            &Bson::Document(doc! {"w": "majority"})
        );
        let own = MetadataStore::new("mongodb://127.0.0.1:1/?w=1&journal=true", "t")
            .await
            .unwrap();
        assert_eq!(
            own.write_concern(),
            &Bson::Document(doc! {"w": 1, "j": true})
        );
    }

    #[test]
    fn every_bulk_of_a_process_has_a_time_of_its_own() {
        let times: Vec<_> = (0..100).map(|_| batch_time()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }
}
