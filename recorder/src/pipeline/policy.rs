//! One rule for every step that must succeed before a message is settled (its documents, its
//! events, its dead letter): tried again and again with capped backoff, for as long as it takes;
//! held in readiness once it is slow or failing, and, when it holds the settlement of the bulks
//! behind it, with the writes' clock stopped (so that no parent wait runs out meanwhile, see
//! [`crate::telemetry::health`]); never given up because shutdown began, only once the
//! shutdown's budget is spent ([`crate::shutdown`]), when its messages go back to the queue.
//!
//! The writes themselves follow the same rule in [`super::retry`], which adds what only a write
//! needs (refused rows, the same error again and again).

use std::{fmt::Display, sync::Arc, time::Duration};

use crate::{
    backoff::Backoff,
    shutdown::Shutdown,
    telemetry::health::{Health, Hold, Holds},
};

/// One try of a step; called again after a failure.
pub trait Attempt: Send {
    type Output;
    type Error: Display;

    fn attempt(&mut self) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// What a step is, for the policy.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// In the logs: "<name> not done: ...".
    pub name: &'static str,
    /// What its hold keeps back.
    pub holds: Holds,
    /// How long a try may take before readiness says its messages are held.
    pub slow: Duration,
}

/// The shutdown's budget ran out before the step was done: its messages go back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shutdown's budget (BULK_RECORDER_SHUTDOWN_TIMEOUT_MS) ran out first")]
pub struct Expired;

/// Retries, holds and shutdown, for every step after a commit.
#[derive(Clone)]
pub struct Policy {
    pub health: Arc<Health>,
    pub shutdown: Shutdown,
}

impl Policy {
    /// Tries `work` until it succeeds, or the shutdown's budget runs out (`Expired`).
    pub async fn until_done<A: Attempt>(
        &self,
        step: &Step,
        work: &mut A,
    ) -> Result<A::Output, Expired> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut hold: Option<Hold> = None;
        let mut failures = 0u64;
        loop {
            let tried =
                self.health
                    .hold_while_slow(work.attempt(), step.slow, step.holds, &mut hold);
            let error = match self.shutdown.within(tried).await {
                None => return Err(Expired),
                Some(Ok(done)) => {
                    if failures > 0 {
                        tracing::info!(step = step.name, failures, "done after retries");
                    }
                    return Ok(done);
                }
                Some(Err(error)) => error,
            };
            failures += 1;
            let delay = backoff.next_delay();
            tracing::warn!(
                step = step.name,
                %error,
                failures,
                retry_in_ms = delay.as_millis() as u64,
                "not done: holding its messages and retrying"
            );
            hold.get_or_insert_with(|| self.health.hold_as(step.holds));
            if !self.shutdown.pause(delay).await {
                return Err(Expired);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::watch;

    /// Fails `failures` times, then succeeds.
    struct Flaky {
        failures: u32,
        tries: u32,
    }

    impl Attempt for Flaky {
        type Output = u32;
        type Error = &'static str;

        async fn attempt(&mut self) -> Result<u32, &'static str> {
            self.tries += 1;
            if self.tries <= self.failures {
                Err("not yet")
            } else {
                Ok(self.tries)
            }
        }
    }

    const STEP: Step = Step {
        name: "test",
        holds: Holds::Settlement,
        slow: Duration::from_secs(1),
    };

    #[tokio::test(start_paused = true)]
    async fn a_failing_step_holds_settlement_and_goes_on_after_sigterm_until_the_budget_ends() {
        let health = Arc::new(Health::default());
        health.set_database(true);
        let (sigterm, requested) = watch::channel(false);
        let policy = Policy {
            health: health.clone(),
            shutdown: Shutdown::follow(requested, Duration::from_secs(60)),
        };
        sigterm.send(true).unwrap();
        let clock = health.write_clock();
        let mut flaky = Flaky {
            failures: 5,
            tries: 0,
        };
        assert_eq!(policy.until_done(&STEP, &mut flaky).await, Ok(6));
        assert!(
            health.write_clock() - clock < Duration::from_millis(10),
            "the writes' clock stood still while the step was held"
        );
        assert!(
            health.ready() || !health.holding(),
            "the hold ends with the step"
        );

        let mut never = Flaky {
            failures: u32::MAX,
            tries: 0,
        };
        assert_eq!(policy.until_done(&STEP, &mut never).await, Err(Expired));
        assert!(never.tries > 10, "retried until the budget ran out");
    }
}
