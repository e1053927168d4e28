//! Readiness: the recorder is ready only while both the broker and the database answer, and
//! no bulk is held back by failing writes (the database may answer a probe and still refuse
//! or stall every write: a lock, a full disk, a permission).

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    broker: AtomicBool,
    database: AtomicBool,
    holding: AtomicBool,
}

impl Health {
    pub fn set_broker(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
    }

    pub fn set_database(&self, up: bool) {
        self.database.store(up, Ordering::Relaxed);
    }

    /// A bulk's write is failing and the bulk is held until it succeeds.
    pub fn set_holding(&self, holding: bool) {
        self.holding.store(holding, Ordering::Relaxed);
    }

    pub fn holding(&self) -> bool {
        self.holding.load(Ordering::Relaxed)
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
