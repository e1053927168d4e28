//! The ledger's Redis backup, acknowledged as its own consumer does.
//!
//! Before publishing a transaction, the ledger stores it in the hash `backup_queue:{transactions}`
//! (field `transaction:{transactions}:<org>:<ledger>:<tx>`, a JSON value with its
//! `transaction_status`), and a cron job republishes every entry older than 30 minutes. After
//! persisting a message the ledger's consumer removes the entry, only while its status is still
//! the one the message was backed up under (a late PENDING message must not remove the entry its
//! commit wrote), and deletes the write-behind cache key `wb_transaction:{<org>:<ledger>:<tx>}`.
//! A recorder in its place must do the same, or every transaction comes back every 30 minutes.
//!
//! Here, for every message of a committed bulk (duplicates and transitions included, as the
//! ledger does): one round-trip, a pipeline of a Lua script that compares and deletes atomically
//! (the ledger reads, compares and deletes in three steps) and the write-behind deletions. The
//! bulk's acknowledgement waits for it at most `BULK_RECORDER_REDIS_TIMEOUT_MS`: past that, or
//! when Redis fails, the entries go to a bounded backlog retried in the background with backoff.
//! Redis trouble never holds a message: an entry given up (the backlog full) is republished by
//! the ledger after 30 minutes, found stored, and cleaned up then.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Notify;

use super::redis_client::RedisClient;
use crate::{
    backoff::Backoff, config::RedisConfig, pipeline::collector::Pending,
    telemetry::metrics::Metrics,
};

/// The ledger's backup hash (its `{transactions}` hash tag keeps it on one cluster slot).
pub const BACKUP_HASH: &str = "backup_queue:{transactions}";

/// Entries kept for a retry at most (about 200 bytes each).
pub const BACKLOG_LIMIT: usize = 100_000;

/// Removes a backup entry when its status is still the expected one (compared as the ledger
/// does, case-insensitively). KEYS[1]: the hash; ARGV: field, expected status, field, ...
/// Returns {removed, kept, absent}.
pub const COMPARE_AND_DELETE: &str = r"
local removed, kept, absent = 0, 0, 0
for i = 1, #ARGV, 2 do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if not entry then
    absent = absent + 1
  else
    local ok, decoded = pcall(cjson.decode, entry)
    local status = ok and type(decoded) == 'table' and decoded['transaction_status']
    if type(status) == 'string' and string.upper(status) == ARGV[i + 1] then
      redis.call('HDEL', KEYS[1], ARGV[i])
      removed = removed + 1
    else
      kept = kept + 1
    end
  end
end
return {removed, kept, absent}
";

/// What one message asks of the ledger's Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its field in [`BACKUP_HASH`].
    pub field: String,
    /// The status its entry must still hold to be removed (upper case).
    pub expected: String,
    /// Its write-behind cache key.
    pub write_behind: String,
}

impl Entry {
    pub fn of(message: &Pending) -> Self {
        let t = &message.transaction;
        let ids = format!("{}:{}:{}", t.organization_id, t.ledger_id, t.id);
        Self {
            field: format!("transaction:{{transactions}}:{ids}"),
            expected: message.bookkeeping.backup_status.to_uppercase(),
            write_behind: format!("wb_transaction:{{{ids}}}"),
        }
    }
}

/// What the script did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub removed: u64,
    pub kept: u64,
    pub absent: u64,
}

/// Acknowledges the backup after each commit; shared by the bulks in flight.
pub struct Cleanup {
    client: Arc<RedisClient>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    backlog: Arc<Backlog>,
}

/// Entries whose cleanup failed, for the background retry.
#[derive(Default)]
struct Backlog {
    entries: Mutex<VecDeque<Entry>>,
    arrived: Notify,
}

impl Cleanup {
    /// Starts the background retry. Nothing connects yet: Redis being away at start-up must not
    /// keep the recorder from recording.
    pub async fn start(config: &RedisConfig, metrics: Arc<Metrics>) -> Self {
        let cleanup = Self {
            client: Arc::new(RedisClient::new(
                config.target.clone(),
                config.shown.clone(),
            )),
            timeout: config.timeout,
            metrics,
            backlog: Arc::default(),
        };
        tokio::spawn(retry_backlog(
            cleanup.client.clone(),
            cleanup.backlog.clone(),
            cleanup.metrics.clone(),
            cleanup.timeout,
        ));
        cleanup
    }

    /// Cleans up after `messages` were committed, waiting at most the configured timeout.
    pub async fn after_commit(&self, messages: &[Pending]) {
        let entries: Vec<Entry> = messages.iter().map(Entry::of).collect();
        if entries.is_empty() {
            return;
        }
        match tokio::time::timeout(self.timeout, self.client.clean(&entries)).await {
            Ok(Ok(cleaned)) => count(&self.metrics, cleaned),
            Ok(Err(error)) => self.defer(entries, &error.to_string()),
            Err(_) => self.defer(entries, "no answer within BULK_RECORDER_REDIS_TIMEOUT_MS"),
        }
    }

    /// Entries left for the background retry (a gauge would say the same; tests read this).
    pub fn backlog(&self) -> usize {
        self.backlog.entries.lock().expect("backlog").len()
    }

    fn defer(&self, entries: Vec<Entry>, why: &str) {
        self.metrics.ledger_cleanup("failed", entries.len() as u64);
        tracing::warn!(
            entries = entries.len(),
            why,
            "the ledger's Redis backup was not cleaned up: retrying in the background"
        );
        let dropped = self.backlog.push(entries);
        if dropped > 0 {
            self.metrics.ledger_cleanup("dropped", dropped);
            tracing::warn!(
                dropped,
                limit = BACKLOG_LIMIT,
                "the Redis cleanup backlog is full: the oldest entries are left to the ledger's own republishing"
            );
        }
        self.backlog.arrived.notify_one();
    }
}

impl Backlog {
    /// Adds `entries`, dropping the oldest beyond [`BACKLOG_LIMIT`]; returns how many were.
    fn push(&self, entries: Vec<Entry>) -> u64 {
        let mut backlog = self.entries.lock().expect("backlog");
        backlog.extend(entries);
        let over = backlog.len().saturating_sub(BACKLOG_LIMIT);
        backlog.drain(..over);
        over as u64
    }

    fn take(&self, n: usize) -> Vec<Entry> {
        let mut backlog = self.entries.lock().expect("backlog");
        let n = n.min(backlog.len());
        backlog.drain(..n).collect()
    }

    fn put_back(&self, entries: Vec<Entry>) {
        let mut backlog = self.entries.lock().expect("backlog");
        for entry in entries.into_iter().rev() {
            backlog.push_front(entry);
        }
    }
}

fn count(metrics: &Metrics, cleaned: Cleaned) {
    metrics.ledger_cleanup("removed", cleaned.removed);
    metrics.ledger_cleanup("kept", cleaned.kept);
    metrics.ledger_cleanup("absent", cleaned.absent);
}

/// Retries the backlog, a thousand entries a round-trip, backing off while Redis fails.
async fn retry_backlog(
    client: Arc<RedisClient>,
    backlog: Arc<Backlog>,
    metrics: Arc<Metrics>,
    timeout: Duration,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let entries = backlog.take(1000);
        if entries.is_empty() {
            backlog.arrived.notified().await;
            continue;
        }
        let bound = timeout.max(Duration::from_secs(2));
        match tokio::time::timeout(bound, client.clean(&entries)).await {
            Ok(Ok(cleaned)) => {
                tracing::info!(
                    entries = entries.len(),
                    "the ledger's Redis backup cleaned up after a failure"
                );
                count(&metrics, cleaned);
                backoff.reset();
            }
            _ => {
                backlog.put_back(entries);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            field: n.to_string(),
            expected: "CREATED".into(),
            write_behind: String::new(),
        }
    }

    #[test]
    fn the_backlog_keeps_the_newest_entries_within_its_limit() {
        let backlog = Backlog::default();
        assert_eq!(backlog.push((0..BACKLOG_LIMIT).map(entry).collect()), 0);
        assert_eq!(
            backlog.push(vec![entry(BACKLOG_LIMIT), entry(BACKLOG_LIMIT + 1)]),
            2
        );
        let first = backlog.take(1);
        assert_eq!(first, vec![entry(2)], "the two oldest were dropped");
        backlog.put_back(first);
        assert_eq!(backlog.take(1), vec![entry(2)], "put back in front");
    }
}
