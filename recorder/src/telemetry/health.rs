//! Readiness: the recorder is ready only while the broker and the database answer, every
//! consumer it started is still consuming, and no bulk is held back (a write failing or waiting
//! for its commit to become durable: the database may answer a probe and still refuse or stall
//! every write: a lock, a full disk, a permission, a synchronous standby away).

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
    /// Writes holding their bulk, by hold id, with the time each began.
    holds: Mutex<BTreeMap<u64, Instant>>,
    next_hold: AtomicU64,
}

/// A bulk held back while this value lives.
#[derive(Debug)]
pub struct Hold {
    health: Arc<Health>,
    id: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.health.holds.lock().expect("holds").remove(&self.id);
    }
}

impl Health {
    pub fn set_broker(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
    }

    pub fn set_database(&self, up: bool) {
        self.database.store(up, Ordering::Relaxed);
    }

    /// Marks a bulk as held until the returned value is dropped.
    pub fn hold(self: &Arc<Self>) -> Hold {
        let id = self.next_hold.fetch_add(1, Ordering::Relaxed);
        self.holds.lock().expect("holds").insert(id, Instant::now());
        Hold {
            health: self.clone(),
            id,
        }
    }

    pub fn holding(&self) -> bool {
        !self.holds.lock().expect("holds").is_empty()
    }

    /// How long the longest-held bulk has been held; zero when none is.
    pub fn held_for(&self) -> Duration {
        self.holds
            .lock()
            .expect("holds")
            .values()
            .min()
            .map_or(Duration::ZERO, Instant::elapsed)
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
        let second = health.hold();
        drop(first);
        assert!(
            health.holding() && !health.ready(),
            "one bulk is still held"
        );
        drop(second);
        assert!(health.ready() && health.held_for() == Duration::ZERO);
    }
}
