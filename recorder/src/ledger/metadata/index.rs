//! The ledger's `{entity_id: 1}` index on both collections: looked for by its key (whatever its
//! name), made when missing, best-effort. Nothing the recorder does needs it (its upserts are
//! correct without it, only slower on a large collection), so an index the store refuses to make
//! (one with the same key under another name, a role without `createIndex`) is said once and
//! never holds a message.

use futures::TryStreamExt;
use mongodb::{
    Database, IndexModel,
    bson::{Bson, Document, doc},
};

use super::{MetadataError, OPERATION, TRANSACTION, bounded};

/// Makes sure both collections have the index, or says why not; an error only when the store
/// does not answer (the caller retries, as for any write).
pub async fn ensure(database: &Database) -> Result<(), MetadataError> {
    for (collection, _) in [TRANSACTION, OPERATION] {
        if has_entity_index(database, collection).await? {
            continue;
        }
        let index = IndexModel::builder().keys(doc! {"entity_id": 1}).build();
        let target = database.collection::<Document>(collection);
        match bounded(async move { target.create_index(index).await }).await {
            Ok(_) => tracing::info!(collection, "created the ledger's index {{entity_id: 1}}"),
            Err(error) => tracing::warn!(
                collection,
                %error,
                "the ledger's index {{entity_id: 1}} is missing and could not be made: the \
                 documents are written all the same (only the ledger's reads by entity are \
                 slower); make it with db.{collection}.createIndex({{entity_id: 1}})"
            ),
        }
    }
    Ok(())
}

/// Whether an index on exactly `{entity_id: 1}` exists (a collection not made yet has none).
async fn has_entity_index(database: &Database, collection: &str) -> Result<bool, MetadataError> {
    let target = database.collection::<Document>(collection);
    let listed = bounded(async move {
        let cursor = target.list_indexes().await?;
        cursor.try_collect::<Vec<IndexModel>>().await
    })
    .await;
    match listed {
        Ok(indexes) => Ok(indexes.iter().any(|index| is_entity_key(&index.keys))),
        Err(MetadataError::Mongo(error)) if namespace_not_found(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

/// `{entity_id: 1}`, whatever number type holds the 1.
fn is_entity_key(keys: &Document) -> bool {
    keys.len() == 1
        && match keys.get("entity_id") {
            Some(Bson::Int32(1)) | Some(Bson::Int64(1)) => true,
            Some(Bson::Double(d)) => *d == 1.0,
            _ => false,
        }
}

/// `NamespaceNotFound` (26): the collection does not exist yet.
fn namespace_not_found(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        mongodb::error::ErrorKind::Command(command) if command.code == 26
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_recognised_by_its_key_whatever_its_name() {
        assert!(is_entity_key(&doc! {"entity_id": 1}));
        assert!(is_entity_key(&doc! {"entity_id": 1i64}));
        assert!(is_entity_key(&doc! {"entity_id": 1.0}));
        assert!(!is_entity_key(&doc! {"entity_id": -1}));
        assert!(!is_entity_key(&doc! {"entity_id": 1, "entity_name": 1}));
    }
}
