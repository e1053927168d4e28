//! Watches: every change after the requested resourceVersion, then each new one as it happens,
//! one JSON line per event, until the request's `timeoutSeconds` (as a real API server ends a
//! watch, after which clients watch again).

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use serde_json::json;

use super::{Change, Shared, request::Query};

pub(super) type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// What a watch selects.
pub(super) struct Selection {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub query: Query,
    pub metadata_only: bool,
}

impl Selection {
    fn matches(&self, change: &Change) -> bool {
        change.group == self.group
            && change.resource == self.resource
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == change.namespace)
            && self.query.selects(&change.object)
    }
}

/// The streaming body of a watch starting after `since`.
pub(super) fn stream(shared: Arc<Shared>, selection: Selection, since: u64) -> ResponseBody {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let timeout = Duration::from_secs(selection.query.timeout_seconds.unwrap_or(1800));
    let mut changes = shared.changes.subscribe();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last = since;
        loop {
            changes.borrow_and_update();
            let batch: Vec<Change> = {
                let state = shared.state.lock().expect("state");
                let start = state.changes.partition_point(|c| c.rv <= last);
                last = state.rv;
                state.changes[start..]
                    .iter()
                    .filter(|c| selection.matches(c))
                    .cloned()
                    .collect()
            };
            for change in batch {
                let object = if selection.metadata_only {
                    super::storage::metadata_only(&change.object)
                } else {
                    change.object
                };
                let line = json!({"type": change.kind, "object": object}).to_string() + "\n";
                if tx.send(Bytes::from(line)).is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    StreamBody::new(lines).boxed_unsync()
}
