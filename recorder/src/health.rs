//! Readiness: the recorder is ready only while both the broker and the database answer.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    broker: AtomicBool,
    database: AtomicBool,
}

impl Health {
    pub fn set_broker(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
    }

    pub fn set_database(&self, up: bool) {
        self.database.store(up, Ordering::Relaxed);
    }

    pub fn broker(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
    }

    pub fn database(&self) -> bool {
        self.database.load(Ordering::Relaxed)
    }

    pub fn ready(&self) -> bool {
        self.broker() && self.database()
    }
}
