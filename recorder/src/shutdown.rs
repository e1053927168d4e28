//! Shutdown, in one place, with one budget (`BULK_RECORDER_SHUTDOWN_TIMEOUT_MS`).
//!
//! At SIGTERM the recorder stops consuming, writes what it holds, and lets everything already
//! under way (a write, its documents and events, a dead letter, a child waiting for a parent in
//! the last bulks, the acknowledgements) finish. Nothing under way gives up because shutdown
//! began: each keeps retrying as it would otherwise, until the budget runs out. Then what is not
//! finished goes back to the queue (counted, logged). The last fifth of the budget (at most 5 s)
//! is kept for that: returning messages, the last Redis cleanup, the spans and closing the
//! connections, so that the whole shutdown fits the budget and the pod's grace period.
//!
//! [`Phase::Stopping`] is for what must stop (consuming, reconnecting, waiting for new work);
//! [`Phase::Expired`] for what must give up (retries, held commits, unconfirmed publishes).

use std::time::Duration;

use tokio::{sync::watch, time::Instant};

/// Where the recorder is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// SIGTERM came: no new work; what is under way goes on.
    Stopping,
    /// The budget for work under way is spent: give up, return it to the queue.
    Expired,
}

/// The most kept back, at the end of the budget, for returning what is left and closing.
const MAX_RESERVE: Duration = Duration::from_secs(5);

/// A view of the shutdown; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    phase: watch::Receiver<Phase>,
    /// When the whole budget ends (known once shutdown began).
    ends: watch::Receiver<Option<Instant>>,
}

impl Shutdown {
    /// Follows `requested` (true at SIGTERM): the budget starts when it turns true.
    pub fn follow(mut requested: watch::Receiver<bool>, budget: Duration) -> Self {
        let (phase_tx, phase) = watch::channel(Phase::Running);
        let (ends_tx, ends) = watch::channel(None);
        tokio::spawn(async move {
            if requested.wait_for(|stop| *stop).await.is_err() {
                // The sender is gone without a shutdown: one never comes (tests, tools).
                return std::future::pending().await;
            }
            let began = Instant::now();
            let _ = ends_tx.send(Some(began + budget));
            let _ = phase_tx.send(Phase::Stopping);
            tokio::time::sleep_until(began + work_time(budget)).await;
            let _ = phase_tx.send(Phase::Expired);
            // Keeps the channels open for the receivers.
            std::future::pending::<()>().await
        });
        Self { phase, ends }
    }

    /// A shutdown that never comes.
    pub fn never() -> Self {
        let (phase_tx, phase) = watch::channel(Phase::Running);
        let (ends_tx, ends) = watch::channel(None);
        // Leaked on purpose: the receivers must never see the senders gone.
        std::mem::forget(phase_tx);
        std::mem::forget(ends_tx);
        Self { phase, ends }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// SIGTERM came (stop taking new work).
    pub fn requested(&self) -> bool {
        self.phase() != Phase::Running
    }

    /// The budget for work under way is spent (give up).
    pub fn expired(&self) -> bool {
        self.phase() == Phase::Expired
    }

    pub async fn wait_requested(&self) {
        self.wait_for(Phase::Stopping).await
    }

    pub async fn wait_expired(&self) {
        self.wait_for(Phase::Expired).await
    }

    async fn wait_for(&self, at_least: Phase) {
        let mut phase = self.phase.clone();
        let reached = |p: &Phase| match at_least {
            Phase::Running => true,
            Phase::Stopping => *p != Phase::Running,
            Phase::Expired => *p == Phase::Expired,
        };
        if phase.wait_for(reached).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// `work`'s output, or `None` when the budget ran out first (`work` is dropped).
    pub async fn within<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            done = work => Some(done),
            _ = self.wait_expired() => None,
        }
    }

    /// Waits `delay` before a retry; false when the budget ran out first.
    pub async fn pause(&self, delay: Duration) -> bool {
        self.within(tokio::time::sleep(delay)).await.is_some()
    }

    /// What is left of the whole budget (`bound` while no shutdown began, never more).
    pub fn left(&self, bound: Duration) -> Duration {
        match *self.ends.borrow() {
            Some(ends) => ends.saturating_duration_since(Instant::now()).min(bound),
            None => bound,
        }
    }
}

/// The part of `budget` given to work under way: all but the reserve (a fifth, at most 5 s).
pub fn work_time(budget: Duration) -> Duration {
    budget - (budget / 5).min(MAX_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_a_fifth_of_the_budget_at_most_five_seconds() {
        assert_eq!(work_time(Duration::from_secs(25)), Duration::from_secs(20));
        assert_eq!(work_time(Duration::from_secs(5)), Duration::from_secs(4));
        assert_eq!(
            work_time(Duration::from_secs(120)),
            Duration::from_secs(115)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn work_under_way_runs_on_after_sigterm_until_the_budget_is_spent() {
        let (sigterm, requested) = watch::channel(false);
        let shutdown = Shutdown::follow(requested, Duration::from_secs(10));
        tokio::task::yield_now().await;
        assert_eq!(shutdown.phase(), Phase::Running);
        assert_eq!(
            shutdown.left(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        sigterm.send(true).unwrap();
        shutdown.wait_requested().await;
        assert!(shutdown.requested() && !shutdown.expired());
        // A try under way is not cut short by SIGTERM.
        assert!(shutdown.pause(Duration::from_secs(7)).await);
        // Past 8 s of the 10 (the last fifth is the reserve), it is.
        let started = Instant::now();
        assert!(!shutdown.pause(Duration::from_secs(60)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(shutdown.expired());
        assert_eq!(
            shutdown.left(Duration::from_secs(60)),
            Duration::from_secs(2)
        );
    }
}
