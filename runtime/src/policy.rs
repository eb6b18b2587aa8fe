//! The poison and attempt policy, in one place: when work that keeps
//! getting lost is given up, when a failed attempt is tried again, and
//! which stuck instances are waiting for code rather than failing. The
//! store only counts; these rules decide.

use std::time::Duration;

use crate::history::{ActivityFailure, FailureKind};
use crate::retry::RetryPolicy;

/// Counts and limits for work that can be lost (a crashed or stalled
/// process), and the retry rules for work that fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Poison {
    /// Lost attempts after which work is given up.
    pub(crate) after: u32,
}

impl Poison {
    /// Whether an instance whose turn was taken `attempts` times without a
    /// commit (this time included) must be failed instead of run.
    pub(crate) fn turn_is_poison(self, attempts: u32) -> bool {
        attempts > self.after
    }

    /// How often an activity attempt was lost: leases taken (`attempt`,
    /// this one included) that ended in neither a result nor a reported
    /// failure (`failures`).
    pub(crate) fn lost_attempts(attempt: u32, failures: u32) -> u32 {
        attempt.saturating_sub(1).saturating_sub(failures)
    }

    /// Whether an activity attempt must not run because earlier ones were
    /// lost too often.
    pub(crate) fn task_is_poison(self, attempt: u32, failures: u32) -> bool {
        Self::lost_attempts(attempt, failures) >= self.after
    }
}

/// What to do after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Attempt again after this wait; the new failure count.
    Retry(Duration, u32),
    /// The call fails for good.
    GiveUp,
    /// The call fails for good: its total timeout ends before another
    /// attempt could start.
    OutOfTime,
}

/// Whether a failed attempt is tried again under `retry`, given `failures`
/// earlier failed attempts: errors and panics are, while attempts remain;
/// aborted and poisoned calls never are.
pub(crate) fn after_failure(
    failure: &ActivityFailure,
    failures: u32,
    retry: &RetryPolicy,
    (now, random): (i64, f64),
) -> AfterFailure {
    let failures = failures.saturating_add(1);
    let retryable = matches!(
        failure,
        ActivityFailure::Error(_) | ActivityFailure::Panic(_) | ActivityFailure::TimedOut(_)
    );
    if !retryable || failures >= retry.max_attempts() {
        return AfterFailure::GiveUp;
    }
    let delay = jittered(retry.delay_after(failures), retry.jitter_fraction(), random);
    // A retry whose wait ends past the total timeout is not made.
    let ready = now.saturating_add(crate::history::duration_micros(delay));
    if retry.deadline().is_some_and(|d| ready >= d) {
        return AfterFailure::OutOfTime;
    }
    AfterFailure::Retry(delay, failures)
}

/// `delay` spread by up to `fraction` of it either way; `random` is in
/// `[0, 1)`.
fn jittered(delay: Duration, fraction: f64, random: f64) -> Duration {
    if fraction <= 0.0 {
        return delay;
    }
    delay.mul_f64((1.0 + fraction * (2.0 * random - 1.0)).max(0.0))
}

/// Whether a stuck instance waits for code (or a repair) and so is not
/// poison: its attempt count starts again. A panic on replay may pass and
/// keeps counting.
pub(crate) fn waits_for_code(kind: FailureKind) -> bool {
    matches!(
        kind,
        FailureKind::Nondeterminism | FailureKind::UnregisteredOrchestrator | FailureKind::Corrupt
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_errors_and_panics_while_attempts_remain() {
        let p = RetryPolicy::attempts(3);
        let panic = ActivityFailure::Panic("boom".into());
        let at = (0, 0.5);
        assert!(matches!(
            after_failure(&panic, 0, &p, at),
            AfterFailure::Retry(_, 1)
        ));
        assert!(matches!(
            after_failure(&panic, 1, &p, at),
            AfterFailure::Retry(_, 2)
        ));
        assert_eq!(after_failure(&panic, 2, &p, at), AfterFailure::GiveUp);
        let aborted = ActivityFailure::Aborted("no".into());
        assert_eq!(after_failure(&aborted, 0, &p, at), AfterFailure::GiveUp);
        let timed_out = ActivityFailure::TimedOut("slow".into());
        assert!(matches!(
            after_failure(&timed_out, 0, &p, at),
            AfterFailure::Retry(_, 1)
        ));
    }

    #[test]
    fn errors_marked_final_are_not_retried() {
        let p = RetryPolicy::attempts(3);
        let fin = ActivityFailure::Final(serde_json::from_str("1").unwrap());
        assert_eq!(after_failure(&fin, 0, &p, (0, 0.5)), AfterFailure::GiveUp);
    }

    #[test]
    fn no_retry_ends_past_the_total_timeout() {
        let p = RetryPolicy::attempts(10)
            .backoff(Duration::from_secs(1))
            .total_timeout(Duration::from_millis(1500))
            .started_at(0);
        let err = ActivityFailure::Panic("x".into());
        // 1 s wait from t=0: ends before 1.5 s.
        assert!(matches!(
            after_failure(&err, 0, &p, (0, 0.5)),
            AfterFailure::Retry(_, 1)
        ));
        // 2 s wait from t=0.1 s: ends past it.
        assert_eq!(
            after_failure(&err, 1, &p, (100_000, 0.5)),
            AfterFailure::OutOfTime
        );
    }

    #[test]
    fn jitter_spreads_the_wait_within_its_fraction() {
        let d = Duration::from_millis(1000);
        assert_eq!(jittered(d, 0.0, 0.9), d);
        assert_eq!(jittered(d, 0.2, 0.5), d);
        assert_eq!(jittered(d, 0.2, 0.0), Duration::from_millis(800));
        assert!(jittered(d, 0.2, 0.999) <= Duration::from_millis(1200));
    }

    #[test]
    fn lost_attempts_exclude_reported_failures() {
        let p = Poison { after: 2 };
        assert!(!p.task_is_poison(1, 0));
        assert!(!p.task_is_poison(3, 1), "one lost, one failed");
        assert!(p.task_is_poison(3, 0), "two lost");
        assert!(!p.turn_is_poison(2));
        assert!(p.turn_is_poison(3));
    }
}
