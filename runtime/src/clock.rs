//! The engine's clock: the machine's, or a virtual one a test moves by
//! hand ([`crate::testing`]). Every time the engine reads (turn times,
//! due times, leases) comes from the clock of its runtime, so two runtimes
//! in one process keep their own time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::history;

/// Microseconds since the Unix epoch, from the machine or from a test.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock(Option<Arc<AtomicI64>>, i64);

impl Clock {
    /// The machine's clock, off by `skew` microseconds: for tests that
    /// prove a shared store's leases do not depend on workers' clocks.
    pub(crate) fn skewed(skew: i64) -> Self {
        Self(None, skew)
    }

    /// A virtual clock standing still at `start` until moved.
    pub(crate) fn virtual_at(start: SystemTime) -> Self {
        Self(Some(Arc::new(AtomicI64::new(history::micros(start)))), 0)
    }

    /// This clock moved to agree with another that read `there` when this
    /// one read `here` (a store's, at start); a virtual clock stays as it
    /// is (a test moves it).
    pub(crate) fn aligned_to(&self, there: i64, here: i64) -> Self {
        match &self.0 {
            Some(_) => self.clone(),
            None => Self(None, self.1.saturating_add(there.saturating_sub(here))),
        }
    }

    /// Now, in store units.
    pub(crate) fn now(&self) -> i64 {
        match &self.0 {
            None => history::now_micros().saturating_add(self.1),
            Some(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Now, as a `SystemTime`.
    pub(crate) fn system_now(&self) -> SystemTime {
        history::system_time(self.now())
    }

    /// Moves a virtual clock forward by `d` (a machine clock cannot be
    /// moved: nothing happens); the new time.
    pub(crate) fn advance(&self, d: Duration) -> i64 {
        match &self.0 {
            None => self.now(),
            Some(t) => {
                t.fetch_add(history::duration_micros(d), Ordering::SeqCst)
                    + history::duration_micros(d)
            }
        }
    }
}
