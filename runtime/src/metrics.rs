//! What a runtime counts as it works: turns committed, activity attempts
//! and failures, and how long commits and attempts take; read with
//! [`Client::metrics`](crate::Client::metrics) (the HTTP API serves them
//! to Prometheus).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The upper bounds of the latency histograms' buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// A latency histogram: counts per bucket (cumulative, as Prometheus
/// reads them), the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Histogram {
    /// Observations at or under each bound of [`BUCKETS`], in order.
    pub buckets: Vec<u64>,
    /// The sum of every observation, in seconds.
    pub sum: f64,
    /// The number of observations.
    pub count: u64,
}

/// One activity's attempts.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ActivityMetrics {
    /// Attempts that ended (returned, failed, panicked or timed out).
    pub attempts: u64,
    /// Those that did not return a value.
    pub failures: u64,
    /// How long the attempts ran.
    pub seconds: Histogram,
}

/// A snapshot of a runtime's counters since it started.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// Orchestrator turns this runtime committed.
    pub turns: u64,
    /// Turns refused at commit (another process had moved the instance).
    pub turns_refused: u64,
    /// How long the commits of turns took, one observation per commit (a
    /// commit holds every turn of a round).
    pub commit_seconds: Histogram,
    /// Per activity, by stored name.
    pub activities: BTreeMap<String, ActivityMetrics>,
}

#[derive(Debug, Default)]
struct Hist {
    buckets: [AtomicU64; BUCKETS.len()],
    micros: AtomicU64,
    count: AtomicU64,
}

impl Hist {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: self.micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
struct ActivityCounters {
    attempts: AtomicU64,
    failures: AtomicU64,
    seconds: Hist,
}

/// The counters a runtime's parts add to.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    turns: AtomicU64,
    refused: AtomicU64,
    commits: Hist,
    activities: Mutex<BTreeMap<String, std::sync::Arc<ActivityCounters>>>,
}

impl Recorder {
    /// A commit of `committed` turns (and `refused` refused) that took `d`.
    pub(crate) fn commit(&self, d: Duration, committed: u64, refused: u64) {
        self.turns.fetch_add(committed, Ordering::Relaxed);
        self.refused.fetch_add(refused, Ordering::Relaxed);
        self.commits.observe(d);
    }

    /// An attempt of activity `name` that ran for `d`.
    pub(crate) fn attempt(&self, name: &str, d: Duration, failed: bool) {
        let stats = {
            let mut all = self
                .activities
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::sync::Arc::clone(all.entry(name.to_owned()).or_default())
        };
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        if failed {
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        stats.seconds.observe(d);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let activities = self
            .activities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    ActivityMetrics {
                        attempts: a.attempts.load(Ordering::Relaxed),
                        failures: a.failures.load(Ordering::Relaxed),
                        seconds: a.seconds.snapshot(),
                    },
                )
            })
            .collect();
        Metrics {
            turns: self.turns.load(Ordering::Relaxed),
            turns_refused: self.refused.load(Ordering::Relaxed),
            commit_seconds: self.commits.snapshot(),
            activities,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_sum_in_seconds() {
        let r = Recorder::default();
        r.commit(Duration::from_millis(3), 2, 1);
        r.commit(Duration::from_millis(200), 1, 0);
        let m = r.snapshot();
        assert_eq!((m.turns, m.turns_refused), (3, 1));
        let h = &m.commit_seconds;
        assert_eq!(h.count, 2);
        assert!((h.sum - 0.203).abs() < 1e-9, "{}", h.sum);
        // Bounds 0.001, 0.0025 hold neither; 0.005 .. 0.1 the first; 0.25 on both.
        assert_eq!(h.buckets[..8], [0, 0, 1, 1, 1, 1, 1, 2]);
        r.attempt("charge", Duration::from_millis(1), true);
        assert_eq!(r.snapshot().activities["charge"].failures, 1);
    }
}
