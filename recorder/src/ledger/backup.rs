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
//! ledger does), in the background: the acknowledgement never waits for Redis (a late cleanup
//! is harmless: a republished message is found stored and cleaned up then). A worker takes the
//! entries in batches of up to a thousand: one Lua script compares and deletes atomically (the
//! ledger reads, compares and deletes in three steps) on the backup's slot, while one `DEL` of
//! the write-behind keys goes to theirs. A call that fails or takes longer than
//! `BULK_RECORDER_REDIS_TIMEOUT_MS` is retried with backoff, as the same batch: the script keeps
//! each batch's result for an hour under a key of its own, so a retry after a lost answer
//! reports what the first run did, and every entry is counted exactly once. The backlog is
//! bounded; what it drops, and what is left at shutdown, is counted `dropped` (the ledger's
//! republishing brings it back).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::Script;
use tokio::{sync::Notify, task::JoinHandle};

use super::redis_client::RedisClient;
use crate::{
    backoff::Backoff,
    config::RedisConfig,
    pipeline::collector::Pending,
    telemetry::{metrics::Metrics, traces},
};

/// The ledger's backup hash (its `{transactions}` hash tag keeps it on one cluster slot).
pub const BACKUP_HASH: &str = "backup_queue:{transactions}";

/// Where a batch's result is kept (on the backup hash's slot), by batch id.
pub const RESULT_KEY_PREFIX: &str = "bulk-recorder:cleanup:{transactions}:";

/// Entries kept for a retry at most (about 200 bytes each).
pub const BACKLOG_LIMIT: usize = 100_000;

/// Entries per call.
const BATCH: usize = 1000;

/// Traced bulks a batch's span links to at most (OpenTelemetry's default limit of links per
/// span: more are dropped anyway). While Redis fails, bulks keep coming: only the newest are
/// kept.
pub const MAX_LINKS: usize = 128;

/// Removes a backup entry when its status is still the expected one (compared as the ledger
/// does, case-insensitively). KEYS[1]: the hash; KEYS[2]: this batch's result; ARGV: field,
/// expected status, field, ... Returns {removed, kept, absent}, the first run's on a retry.
pub const COMPARE_AND_DELETE: &str = r"
local done = redis.call('GET', KEYS[2])
if done then
  return cjson.decode(done)
end
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
redis.call('SET', KEYS[2], cjson.encode({removed, kept, absent}), 'EX', 3600)
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
            expected: message.bookkeeping.backup_status.to_uppercase().into(),
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

/// Acknowledges the backup after each commit, in the background; shared by every write.
pub struct Cleanup {
    backlog: Arc<Backlog>,
    metrics: Arc<Metrics>,
    worker: JoinHandle<()>,
}

/// Entries waiting for their cleanup, and the batch being tried.
#[derive(Default)]
struct Backlog {
    state: Mutex<Queued>,
    arrived: Notify,
}

#[derive(Default)]
struct Queued {
    entries: VecDeque<Entry>,
    /// The traced bulks the waiting entries come from (their batch's span links them).
    origins: Vec<traces::Origin>,
    /// Taken by the worker, kept until Redis answered for it.
    current: Option<Arc<Batch>>,
}

/// Entries cleaned up in one call, under an id of their own.
struct Batch {
    id: String,
    entries: Vec<Entry>,
    origins: Vec<traces::Origin>,
}

impl Cleanup {
    /// Starts the worker. Nothing connects yet: Redis being away at start-up must not keep the
    /// recorder from recording.
    pub fn start(config: &RedisConfig, metrics: Arc<Metrics>) -> Self {
        let client = RedisClient::new(config.target.clone(), config.shown.clone(), config.timeout);
        let backlog = Arc::<Backlog>::default();
        let worker = tokio::spawn(clean(
            client,
            backlog.clone(),
            metrics.clone(),
            config.timeout,
        ));
        Self {
            backlog,
            metrics,
            worker,
        }
    }

    /// Queues the cleanup of `messages`, just committed; never waits.
    pub fn after_commit(&self, messages: &[Pending]) {
        if messages.is_empty() {
            return;
        }
        let dropped = self
            .backlog
            .push(messages.iter().map(Entry::of), traces::origin());
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

    /// Entries not cleaned up yet.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// At shutdown: lets the worker clean up what is queued for at most `within`; what is left
    /// is counted `dropped`.
    pub async fn finish(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.backlog.len() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.worker.abort();
        let left = self.backlog.clear();
        if left > 0 {
            self.metrics.ledger_cleanup("dropped", left as u64);
            tracing::warn!(
                left,
                "shutting down with the ledger's Redis backup not cleaned up for these entries: \
                 the ledger republishes them, and they are found stored"
            );
        }
    }
}

impl Backlog {
    /// Adds `entries`, dropping the oldest waiting beyond [`BACKLOG_LIMIT`]; returns how many
    /// were.
    fn push(&self, entries: impl Iterator<Item = Entry>, origin: Option<traces::Origin>) -> u64 {
        let mut state = self.state.lock().expect("backlog");
        state.entries.extend(entries);
        state.origins.extend(origin);
        let extra_links = state.origins.len().saturating_sub(MAX_LINKS);
        state.origins.drain(..extra_links);
        let over = state.len().saturating_sub(BACKLOG_LIMIT);
        let over = over.min(state.entries.len());
        state.entries.drain(..over);
        over as u64
    }

    /// The batch to try: the one that failed last, or the next up to [`BATCH`] entries.
    fn next(&self) -> Option<Arc<Batch>> {
        let mut state = self.state.lock().expect("backlog");
        if state.current.is_none() && !state.entries.is_empty() {
            let n = state.entries.len().min(BATCH);
            let entries = state.entries.drain(..n).collect();
            let origins = std::mem::take(&mut state.origins);
            state.current = Some(Arc::new(Batch {
                id: uuid::Uuid::new_v4().simple().to_string(),
                entries,
                origins,
            }));
        }
        state.current.clone()
    }

    fn done(&self) {
        self.state.lock().expect("backlog").current = None;
    }

    fn len(&self) -> usize {
        self.state.lock().expect("backlog").len()
    }

    fn clear(&self) -> usize {
        let mut state = self.state.lock().expect("backlog");
        let left = state.len();
        *state = Queued::default();
        left
    }
}

impl Queued {
    fn len(&self) -> usize {
        self.entries.len() + self.current.as_ref().map_or(0, |b| b.entries.len())
    }
}

fn count(metrics: &Metrics, cleaned: Cleaned) {
    metrics.ledger_cleanup("removed", cleaned.removed);
    metrics.ledger_cleanup("kept", cleaned.kept);
    metrics.ledger_cleanup("absent", cleaned.absent);
}

/// The worker: batch after batch, backing off while Redis fails.
async fn clean(
    client: RedisClient,
    backlog: Arc<Backlog>,
    metrics: Arc<Metrics>,
    timeout: Duration,
) {
    let script = Script::new(COMPARE_AND_DELETE);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut failing: Option<String> = None;
    loop {
        let Some(batch) = backlog.next() else {
            backlog.arrived.notified().await;
            continue;
        };
        let mut span = traces::linked("clean up the ledger's Redis backup", &batch.origins);
        span.attribute("db.system.name", "redis");
        span.attribute("db.operation.batch.size", batch.entries.len() as i64);
        let answer = tokio::time::timeout(timeout, run(&client, &script, &batch)).await;
        if !matches!(answer, Ok(Ok(_))) {
            span.fail(&"the cleanup failed or timed out: retried");
        }
        drop(span);
        match answer {
            Ok(Ok(cleaned)) => {
                if failing.take().is_some() {
                    tracing::info!("the ledger's Redis answers again: its backup is cleaned up");
                }
                count(&metrics, cleaned);
                backlog.done();
                backoff.reset();
            }
            failed => {
                let why = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => {
                        // A connection that does not answer may never answer again.
                        client.reset().await;
                        "no answer within BULK_RECORDER_REDIS_TIMEOUT_MS".to_string()
                    }
                };
                if failing.as_deref() != Some(batch.id.as_str()) {
                    metrics.ledger_cleanup("failed", batch.entries.len() as u64);
                    tracing::warn!(
                        entries = batch.entries.len(),
                        why,
                        "the ledger's Redis backup was not cleaned up: retrying"
                    );
                    failing = Some(batch.id.clone());
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// One batch: the script on the backup's slot, the write-behind keys on theirs.
async fn run(client: &RedisClient, script: &Script, batch: &Batch) -> redis::RedisResult<Cleaned> {
    let result_key = format!("{RESULT_KEY_PREFIX}{}", batch.id);
    let args: Vec<&str> = batch
        .entries
        .iter()
        .flat_map(|e| [e.field.as_str(), e.expected.as_str()])
        .collect();
    let write_behind: Vec<&str> = batch
        .entries
        .iter()
        .map(|e| e.write_behind.as_str())
        .collect();
    let (removed, kept, absent): (u64, u64, u64) = client
        .script_and_delete(script, &[BACKUP_HASH, &result_key], &args, &write_behind)
        .await?;
    Ok(Cleaned {
        removed,
        kept,
        absent,
    })
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
    fn the_backlog_keeps_the_newest_entries_within_its_limit_and_a_failed_batch_whole() {
        let backlog = Backlog::default();
        assert_eq!(backlog.push((0..BACKLOG_LIMIT).map(entry), None), 0);
        let batch = backlog.next().expect("a batch");
        assert_eq!(batch.entries.len(), BATCH);
        assert_eq!(batch.entries[0], entry(0));
        assert_eq!(
            backlog.push(
                [entry(BACKLOG_LIMIT), entry(BACKLOG_LIMIT + 1)].into_iter(),
                None
            ),
            2
        );
        let again = backlog.next().expect("the same batch");
        assert_eq!(again.id, batch.id, "retried whole, under its id");
        backlog.done();
        let next = backlog.next().expect("the next batch");
        assert_eq!(
            next.entries[0],
            entry(BATCH + 2),
            "the two oldest waiting were dropped"
        );
        assert_eq!(backlog.len(), BACKLOG_LIMIT - BATCH);
    }

    #[test]
    fn while_a_batch_fails_the_links_to_the_bulks_behind_it_stay_bounded() {
        let backlog = Backlog::default();
        backlog.push((0..10).map(entry), Some(traces::Origin::for_tests(0)));
        let failing = backlog.next().expect("a batch");
        assert_eq!(failing.origins.len(), 1);
        for bulk in 1..=10_000u64 {
            backlog.push(
                std::iter::once(entry(0)),
                Some(traces::Origin::for_tests(bulk)),
            );
        }
        assert_eq!(backlog.state.lock().unwrap().origins.len(), MAX_LINKS);
        backlog.done();
        let next = backlog.next().expect("the next batch");
        assert_eq!(next.origins.len(), MAX_LINKS, "linked to the newest bulks");
    }
}
