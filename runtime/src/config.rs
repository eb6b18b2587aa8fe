//! The runtime's tunables, each with one owner: the builder sets them, the
//! runtime hands each part the ones it reads, and every default is here.

use std::time::Duration;

/// The default largest payload: 4 MiB of JSON.
pub(crate) const DEFAULT_MAX_PAYLOAD: usize = 4 << 20;

/// Tunables, with defaults that suit one process on one machine.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Live executions kept in memory.
    pub(crate) cache_size: usize,
    /// Activity attempts run at once.
    pub(crate) max_activities: usize,
    /// How long an activity attempt is leased (renewed while it runs).
    pub(crate) activity_lease: Duration,
    /// How long a fetched instance stays locked to this process while its
    /// turn is computed and committed.
    pub(crate) instance_lock: Duration,
    /// How often to look in the store for work other processes queued.
    pub(crate) poll_interval: Duration,
    /// How soon a stuck instance is tried again.
    pub(crate) stuck_retry: Duration,
    /// Instances per dispatcher round, and messages per instance per round.
    pub(crate) batch: usize,
    /// Lost attempts after which work is poison.
    pub(crate) poison_after: u32,
    /// History length past which a warning is logged.
    pub(crate) history_warning: u64,
    /// The largest payload, in bytes of JSON.
    pub(crate) max_payload: usize,
    /// How long `shutdown()` lets running activity attempts finish.
    pub(crate) shutdown_grace: Duration,
    /// Messages a client may hand the dispatcher in memory before it waits
    /// (backpressure: a client faster than the engine is slowed down).
    pub(crate) inbox_capacity: usize,
    /// How long one turn of orchestrator code may run before its instance
    /// is failed (`FailureKind::TurnTimeout`).
    pub(crate) turn_timeout: Duration,
    /// Run every turn a second time from history and compare (tests and
    /// staging).
    pub(crate) verify: bool,
    /// The clock every part reads: the machine's, or a test's.
    pub(crate) clock: crate::clock::Clock,
    /// The counters every part adds to (shared by the clones).
    pub(crate) metrics: std::sync::Arc<crate::metrics::Recorder>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cache_size: 10_000,
            max_activities: 1_000,
            activity_lease: Duration::from_secs(30),
            instance_lock: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            stuck_retry: Duration::from_secs(30),
            batch: 512,
            poison_after: 10,
            history_warning: 10_000,
            max_payload: DEFAULT_MAX_PAYLOAD,
            shutdown_grace: Duration::from_secs(10),
            inbox_capacity: 4_096,
            turn_timeout: Duration::from_secs(10),
            verify: false,
            clock: crate::clock::Clock::default(),
            metrics: std::sync::Arc::default(),
        }
    }
}
