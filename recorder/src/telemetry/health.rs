//! Readiness: the recorder is ready only while the broker and the database answer, every
//! consumer it started is still consuming, and no bulk is held back (a write failing or waiting
//! for its commit to become durable: the database may answer a probe and still refuse or stall
//! every write: a lock, a full disk, a permission, a synchronous standby away), nor a dead letter
//! the broker does not confirm.
//!
//! It also keeps the writes' clock: time during which writes went through (the database up and
//! nothing holding settlement: a write, or the documents or events of a committed one). A
//! transaction waiting for its parent waits by this clock, so that an outage or a hold (when the
//! parent's own bulk is held too) does not use up its wait.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

#[derive(Debug, Default)]
pub struct Health {
    broker: AtomicBool,
    database: AtomicBool,
    state: Mutex<State>,
    next_hold: AtomicU64,
    commits: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Holds by id: when each began, and what it holds.
    holds: BTreeMap<u64, (Instant, Holds)>,
    database_down: bool,
    clock: Clock,
}

/// Time the writes went through: stopped while the database is down or a write is held.
#[derive(Debug)]
struct Clock {
    started: Instant,
    stopped_total: Duration,
    stopped_since: Option<Instant>,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            stopped_total: Duration::ZERO,
            stopped_since: None,
        }
    }
}

impl Clock {
    fn update(&mut self, stopped: bool) {
        match (self.stopped_since, stopped) {
            (None, true) => self.stopped_since = Some(Instant::now()),
            (Some(since), false) => {
                self.stopped_total += since.elapsed();
                self.stopped_since = None;
            }
            _ => {}
        }
    }

    /// One reading of the clock (one `now` for both parts, so that it never runs backwards
    /// while stopped).
    fn read(&self) -> Duration {
        let now = Instant::now();
        let stopped = self.stopped_total
            + self
                .stopped_since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        now.saturating_duration_since(self.started)
            .saturating_sub(stopped)
    }
}

impl State {
    fn update_clock(&mut self) {
        let stopped = self.database_down
            || self
                .holds
                .values()
                .any(|(_, holds)| *holds == Holds::Settlement);
        self.clock.update(stopped);
    }
}

/// What a hold keeps back besides readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// The settlement of the bulks behind it (a write failing or waiting to be durable, the
    /// documents or events of a committed one): the writes' clock stops too, and with it every
    /// clock that leads to a dead letter.
    Settlement,
    /// Only its own message (a dead letter the broker does not confirm): the rest goes on.
    Aside,
}

/// A bulk (or a dead letter) held back while this value lives.
#[derive(Debug)]
pub struct Hold {
    health: Arc<Health>,
    id: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut state = self.health.state.lock().expect("health");
        state.holds.remove(&self.id);
        state.update_clock();
    }
}

impl Health {
    pub fn set_broker(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
    }

    pub fn set_database(&self, up: bool) {
        self.database.store(up, Ordering::Relaxed);
        let mut state = self.state.lock().expect("health");
        state.database_down = !up;
        state.update_clock();
    }

    /// Marks a write as held (readiness off, the writes' clock stopped) until the returned
    /// value is dropped.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.hold_as(Holds::Settlement)
    }

    /// Marks something as held until the returned value is dropped: readiness off, and the
    /// writes' clock stopped when it holds settlement.
    pub fn hold_as(self: &Arc<Self>, holds: Holds) -> Hold {
        let id = self.next_hold.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().expect("health");
        state.holds.insert(id, (Instant::now(), holds));
        state.update_clock();
        Hold {
            health: self.clone(),
            id,
        }
    }

    /// Awaits `work`, holding (`holds`) once it has taken longer than `after`; the hold is kept
    /// in `hold`, for the caller's retries.
    pub async fn hold_while_slow<F: Future>(
        self: &Arc<Self>,
        work: F,
        after: Duration,
        holds: Holds,
        hold: &mut Option<Hold>,
    ) -> F::Output {
        tokio::pin!(work);
        if hold.is_none() {
            tokio::select! {
                done = &mut work => return done,
                _ = tokio::time::sleep(after) => *hold = Some(self.hold_as(holds)),
            }
        }
        work.await
    }

    pub fn holding(&self) -> bool {
        !self.state.lock().expect("health").holds.is_empty()
    }

    /// How long the longest-held bulk has been held; zero when none is.
    pub fn held_for(&self) -> Duration {
        self.state
            .lock()
            .expect("health")
            .holds
            .values()
            .map(|(since, _)| since)
            .min()
            .map_or(Duration::ZERO, Instant::elapsed)
    }

    /// The writes' clock: time, since start, during which writes went through.
    pub fn write_clock(&self) -> Duration {
        self.state.lock().expect("health").clock.read()
    }

    /// Counts a committed write: evidence that the write path works.
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes committed since start.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub fn broker(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
    }

    pub fn database(&self) -> bool {
        self.database.load(Ordering::Relaxed)
    }

    pub fn ready(&self) -> bool {
        self.broker() && self.database() && !self.holding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_lasts_as_long_as_any_hold() {
        let health = Arc::new(Health::default());
        health.set_broker(true);
        health.set_database(true);
        assert!(health.ready());
        let first = health.hold();
        let second = health.hold_as(Holds::Aside);
        drop(first);
        assert!(
            health.holding() && !health.ready(),
            "one hold is still there"
        );
        drop(second);
        assert!(health.ready() && health.held_for() == Duration::ZERO);
    }

    #[test]
    fn the_writes_clock_stops_while_a_write_is_held_or_the_database_is_down() {
        let health = Arc::new(Health::default());
        health.set_database(true);
        let pause = Duration::from_millis(30);
        let write_held = health.hold();
        let before = health.write_clock();
        std::thread::sleep(pause);
        assert!(
            health.write_clock() - before < pause / 3,
            "stopped while held"
        );
        drop(write_held);
        let aside = health.hold_as(Holds::Aside);
        let before = health.write_clock();
        std::thread::sleep(pause);
        assert!(
            health.write_clock() - before >= pause,
            "a dead letter does not stop it"
        );
        drop(aside);
        health.set_database(false);
        let before = health.write_clock();
        std::thread::sleep(pause);
        assert!(
            health.write_clock() - before < pause / 3,
            "stopped while down"
        );
        health.set_database(true);
        std::thread::sleep(pause);
        assert!(health.write_clock() - before >= pause, "running again");
    }
}
