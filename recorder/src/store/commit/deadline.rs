//! One deadline for all the round-trips of a write, so that a silent connection (half-open, or a
//! server that stopped answering) fails the write instead of stalling the pipeline; and, for a
//! write's statements before its COMMIT, the end of the shutdown's budget too (nothing is
//! committed yet, so the write can be given up there and its messages returned to the queue).

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use super::errors::WriteError;
use crate::shutdown::Shutdown;

/// The time a write may take, all its round-trips together.
#[derive(Debug, Clone)]
pub struct Deadline {
    pub at: Instant,
    budget: Duration,
    /// Given up, too, once the shutdown's budget is spent.
    shutdown: Option<Shutdown>,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
            budget,
            shutdown: None,
        }
    }

    /// A write's deadline: `budget`, or the end of the shutdown's budget if that comes first.
    pub fn for_write(budget: Duration, shutdown: &Shutdown) -> Self {
        Self {
            shutdown: Some(shutdown.clone()),
            ..Self::after(budget)
        }
    }

    /// Awaits one database call, at most until the deadline.
    pub async fn call<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, WriteError> {
        let expired = async {
            match &self.shutdown {
                Some(shutdown) => shutdown.wait_expired().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            called = tokio::time::timeout_at(self.at, call) => match called {
                Ok(result) => result.map_err(WriteError::classify),
                Err(_) => Err(WriteError::TimedOut(self.budget, what)),
            },
            _ = expired => Err(WriteError::Unresolved(
                "the shutdown's budget ran out before the write's COMMIT",
            )),
        }
    }
}
