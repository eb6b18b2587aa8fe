//! The engine's clock: the machine's, or a virtual one a test moves by
//! hand ([`crate::testing`]). Every time the engine reads (turn times,
//! due times, leases) comes from the clock of its runtime, so two runtimes
//! in one process keep their own time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::history;

/// Microseconds since the Unix epoch, from the machine or from a test.
/// The second field is the machine clock's offset (shared by the clones:
/// [`Clock::realign`] moves every part of a runtime at once).
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock(Option<Arc<AtomicI64>>, Arc<AtomicI64>);

impl Clock {
    /// The machine's clock, off by `skew` microseconds: for tests that
    /// prove a shared store's leases do not depend on workers' clocks.
    pub(crate) fn skewed(skew: i64) -> Self {
        Self(None, Arc::new(AtomicI64::new(skew)))
    }

    /// A virtual clock standing still at `start` until moved.
    pub(crate) fn virtual_at(start: SystemTime) -> Self {
        Self(
            Some(Arc::new(AtomicI64::new(history::micros(start)))),
            Arc::default(),
        )
    }

    /// This clock moved to agree with another that read `there` when this
    /// one read `here` (a store's, at start); a virtual clock stays as it
    /// is (a test moves it).
    pub(crate) fn aligned_to(&self, there: i64, here: i64) -> Self {
        match &self.0 {
            Some(_) => self.clone(),
            None => {
                let offset = self.1.load(Ordering::SeqCst);
                let aligned = offset.saturating_add(there.saturating_sub(here));
                Self(None, Arc::new(AtomicI64::new(aligned)))
            }
        }
    }

    /// Moves this clock and its clones to agree again with another that
    /// read `there` when this one read `here`: a machine clock stepped
    /// since (NTP, a VM resumed) is followed. A virtual clock stays.
    pub(crate) fn realign(&self, there: i64, here: i64) {
        if self.0.is_none() {
            self.1
                .fetch_add(there.saturating_sub(here), Ordering::SeqCst);
        }
    }

    /// Whether this is a virtual clock.
    pub(crate) fn is_virtual(&self) -> bool {
        self.0.is_some()
    }

    /// Now, in store units.
    pub(crate) fn now(&self) -> i64 {
        match &self.0 {
            None => history::now_micros().saturating_add(self.1.load(Ordering::Relaxed)),
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

#[cfg(test)]
mod tests {
    use super::Clock;

    /// A machine clock re-aligned to a store an hour ahead moves an hour,
    /// and every clone of it (every part of the runtime) with it.
    #[test]
    fn realigning_moves_the_clock_and_its_clones() {
        let clock = Clock::skewed(0);
        let part = clock.clone();
        let hour = 3_600_000_000;
        let here = clock.now();
        clock.realign(here + hour, here);
        let moved = part.now() - here;
        assert!(moved >= hour && moved < hour + 60_000_000, "{moved}");
    }

    /// A virtual clock is the test's: re-aligning leaves it alone.
    #[test]
    fn a_virtual_clock_is_not_realigned() {
        let clock = Clock::virtual_at(std::time::UNIX_EPOCH);
        clock.realign(3_600_000_000, 0);
        assert_eq!(clock.now(), 0);
    }
}
