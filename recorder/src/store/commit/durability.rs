//! Whether a commit is durable as the server is configured.
//!
//! With `synchronous_standby_names` set, COMMIT waits until the synchronous standbys have the
//! commit record. That wait can end without an error: a cancel (a statement timeout, an
//! administrator's `pg_cancel_backend`) returns success with only a WARNING, and a terminated
//! session leaves its commit local and, once it is gone, visible. A failover then loses rows the
//! broker was told were safe. So the recorder does not trust a returned COMMIT: it reads, in
//! the same round-trip, the WAL position the primary has flushed after it and the synchronous
//! standbys' flush positions (`pg_stat_replication`), and acknowledges only once the standbys
//! have reached it. The same check covers rows a write found stored already (a redelivery after
//! such a local commit): every write's own commit is after them in the WAL.
//!
//! A WAL position means something only on the server that wrote it: every reading carries the
//! server's start time, and a reading from another server (a failover during the wait, or a
//! restart) is never compared with it ([`WriteError::ServerChanged`]: the commit is then
//! resolved by its rows, see [`super::resolve`]).
//!
//! Without synchronous standbys a COMMIT (`synchronous_commit = on`, pinned for every session)
//! is durable when it returns. A role without `pg_monitor` (or `pg_read_all_stats`) sees each
//! `pg_stat_replication` row with its `pid` only: the recorder then trusts a COMMIT that
//! returned (none of its own statement timeouts can cancel it), says so at start-up with the
//! grant that lifts it ([`crate::store::privileges`]), and still waits while no standby is connected.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::time::Instant;

use super::errors::WriteError;
use crate::backoff::Backoff;
use crate::store::db::Database;

/// The positions, read right after COMMIT (outside any transaction, so it waits for nothing).
/// The standbys are read only when synchronous ones are configured (`pg_stat_replication`
/// reads every backend's state: not free for every commit of a server without them); a row this
/// role may not read in full has an empty state.
pub const PROBE: &str = "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::int8, \
    current_setting('synchronous_standby_names'), pg_postmaster_start_time(), \
    CASE WHEN current_setting('synchronous_standby_names') = '' THEN '{}'::text[] ELSE \
    ARRAY(SELECT coalesce(sync_state, '') || ':' || \
          coalesce(((flush_lsn - '0/0'::pg_lsn)::int8)::text, '') \
          FROM pg_stat_replication) END";

/// What the probe read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    /// The primary's flushed WAL position after the commit (at or past its commit record).
    pub lsn: i64,
    pub standby_names: String,
    /// Which server: WAL positions of two servers cannot be compared.
    pub server_started: DateTime<Utc>,
    /// Each connected standby: its state (`sync`, `quorum`, `async`, `potential`; empty when
    /// this role may not read it) and its flush position, when readable.
    pub standbys: Vec<(String, Option<i64>)>,
}

impl Positions {
    pub fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        let standbys: Vec<String> = row.try_get(3)?;
        Ok(Self {
            lsn: row.try_get(0)?,
            standby_names: row.try_get(1)?,
            server_started: row.try_get(2)?,
            standbys: standbys
                .iter()
                .map(|entry| {
                    let (state, lsn) = entry.split_once(':').unwrap_or((entry, ""));
                    (state.to_string(), lsn.parse().ok())
                })
                .collect(),
        })
    }

    /// Whether WAL up to `target` is on the standbys `synchronous_standby_names` requires.
    pub fn verdict(&self, target: i64) -> Verdict {
        let (quorum, needed) = match rule(&self.standby_names) {
            None => return Verdict::Durable,
            Some(rule) => rule,
        };
        if self.standbys.iter().any(|(state, _)| state.is_empty()) {
            return Verdict::Unverifiable;
        }
        let state = if quorum { "quorum" } else { "sync" };
        let candidates: Vec<Option<i64>> = self
            .standbys
            .iter()
            .filter(|(s, _)| s == state)
            .map(|(_, lsn)| *lsn)
            .collect();
        if candidates.iter().any(Option::is_none) {
            return Verdict::Unverifiable;
        }
        let caught_up = candidates
            .iter()
            .flatten()
            .filter(|&&lsn| lsn >= target)
            .count();
        let durable = if quorum {
            caught_up >= needed
        } else {
            candidates.len() >= needed && caught_up == candidates.len()
        };
        if durable {
            Verdict::Durable
        } else {
            Verdict::Waiting
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Durable,
    /// Committed on the primary, not yet on the synchronous standbys.
    Waiting,
    /// Synchronous standbys are configured but their positions cannot be read (privileges).
    Unverifiable,
}

/// `synchronous_standby_names` as (quorum, standbys needed); `None` when empty (no
/// synchronous replication). `FIRST n (...)`, `n (...)` and a plain list (FIRST 1) wait for the
/// n highest-priority standbys; `ANY n (...)` for any n of them.
pub fn rule(names: &str) -> Option<(bool, usize)> {
    let names = names.trim();
    if names.is_empty() {
        return None;
    }
    let upper = names.to_ascii_uppercase();
    let (quorum, rest) = if let Some(rest) = upper.strip_prefix("ANY ") {
        (true, rest)
    } else if let Some(rest) = upper.strip_prefix("FIRST ") {
        (false, rest)
    } else {
        (false, upper.as_str())
    };
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let followed_by_list = rest.trim_start()[digits.len()..]
        .trim_start()
        .starts_with('(');
    let needed = match digits.parse() {
        Ok(n) if followed_by_list => n,
        _ => 1,
    };
    Some((quorum, needed))
}

static UNVERIFIABLE_LOGGED: AtomicBool = AtomicBool::new(false);

/// Returns once WAL up to `first.lsn` is durable as `first`'s server is configured, polling the
/// standbys' positions. Holds readiness meanwhile (past a second). `ServerChanged` when another
/// server answers (the position means nothing there); `Unresolved` once the shutdown's budget is spent.
pub async fn wait(db: &Database, first: &Positions) -> Result<(), WriteError> {
    let target = first.lsn;
    let mut now = first.clone();
    let mut backoff = Backoff::new(Duration::from_millis(2), Duration::from_secs(1));
    let started = Instant::now();
    let mut hold = None;
    loop {
        if now.server_started != first.server_started {
            return Err(WriteError::ServerChanged);
        }
        match now.verdict(target) {
            Verdict::Durable => return Ok(()),
            Verdict::Unverifiable => {
                if !UNVERIFIABLE_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "synchronous standbys are configured but this role cannot read their \
                         positions in pg_stat_replication: a COMMIT that returns is trusted \
                         (GRANT pg_monitor TO the recorder's role to have every commit checked)"
                    );
                }
                return Ok(());
            }
            Verdict::Waiting => {}
        }
        if started.elapsed() > Duration::from_secs(1) && hold.is_none() {
            tracing::warn!(
                lsn = target,
                "a commit is not on the synchronous standbys yet: holding its messages \
                 unacknowledged until it is"
            );
            hold = Some(db.health.hold());
        }
        if !db.shutdown.pause(backoff.next_delay()).await {
            return Err(WriteError::Unresolved(
                "the commit is not on the synchronous standbys yet",
            ));
        }
        // A failed reading changes nothing: the same verdict is asked again.
        if let Some(read) = probe(db).await {
            now = read;
        }
    }
}

/// The positions now, asked again (with backoff, holding readiness past a second) until the
/// database answers; `Unresolved` only once the shutdown's budget is spent.
pub async fn positions(db: &Database) -> Result<Positions, WriteError> {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let started = Instant::now();
    let mut hold = None;
    loop {
        if let Some(read) = probe(db).await {
            return Ok(read);
        }
        if started.elapsed() > Duration::from_secs(1) {
            hold.get_or_insert_with(|| db.health.hold());
        }
        if !db.shutdown.pause(backoff.next_delay()).await {
            return Err(WriteError::Unresolved("cannot read the WAL positions"));
        }
    }
}

/// The positions now, on any connection of the pool; `None` when the database does not answer.
pub async fn probe(db: &Database) -> Option<Positions> {
    let deadline = super::deadline::Deadline::after(Duration::from_secs(2));
    let read = deadline
        .call(
            "reading the standbys' positions",
            sqlx::query(PROBE).fetch_one(&db.pool),
        )
        .await
        .and_then(|row| Positions::from_row(&row).map_err(WriteError::classify));
    match read {
        Ok(positions) => Some(positions),
        Err(error) => {
            tracing::debug!(%error, "cannot read the WAL positions");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(names: &str, standbys: &[(&str, Option<i64>)]) -> Positions {
        Positions {
            lsn: 100,
            standby_names: names.into(),
            server_started: DateTime::UNIX_EPOCH,
            standbys: standbys.iter().map(|(s, l)| (s.to_string(), *l)).collect(),
        }
    }

    #[test]
    fn the_rules_of_synchronous_standby_names() {
        assert_eq!(rule(""), None);
        assert_eq!(rule("standby1"), Some((false, 1)));
        assert_eq!(rule("*"), Some((false, 1)));
        assert_eq!(rule("FIRST 2 (a, b, c)"), Some((false, 2)));
        assert_eq!(rule("2 (a, b)"), Some((false, 2)));
        assert_eq!(rule("any 1 (\"pod-2\", \"pod-3\")"), Some((true, 1)));
        assert_eq!(rule("s1, s2"), Some((false, 1)));
    }

    #[test]
    fn durable_only_when_the_required_standbys_reached_the_commit() {
        assert_eq!(positions("", &[]).verdict(100), Verdict::Durable);
        assert_eq!(
            positions("s1", &[]).verdict(100),
            Verdict::Waiting,
            "standby away"
        );
        assert_eq!(
            positions("s1", &[("sync", Some(99))]).verdict(100),
            Verdict::Waiting
        );
        assert_eq!(
            positions("s1", &[("sync", Some(100))]).verdict(100),
            Verdict::Durable
        );
        assert_eq!(
            positions("s1", &[("sync", None)]).verdict(100),
            Verdict::Unverifiable
        );
        assert_eq!(
            positions("s1", &[("", None), ("", None)]).verdict(100),
            Verdict::Unverifiable,
            "a role without pg_read_all_stats sees each standby with its pid only"
        );
        assert_eq!(
            positions("s1", &[("async", Some(150))]).verdict(100),
            Verdict::Waiting,
            "only a synchronous standby counts"
        );
        let two = [("sync", Some(150)), ("sync", Some(90))];
        assert_eq!(
            positions("FIRST 2 (a, b)", &two).verdict(100),
            Verdict::Waiting
        );
        let quorum = [("quorum", Some(150)), ("quorum", Some(90))];
        assert_eq!(
            positions("ANY 1 (a, b)", &quorum).verdict(100),
            Verdict::Durable
        );
        assert_eq!(
            positions("ANY 2 (a, b)", &quorum).verdict(100),
            Verdict::Waiting
        );
    }
}
