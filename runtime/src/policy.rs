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
}

/// Whether a failed attempt is tried again under `retry`, given `failures`
/// earlier failed attempts: errors and panics are, while attempts remain;
/// aborted and poisoned calls never are.
pub(crate) fn after_failure(
    failure: &ActivityFailure,
    failures: u32,
    retry: &RetryPolicy,
) -> AfterFailure {
    let failures = failures.saturating_add(1);
    let retryable = matches!(
        failure,
        ActivityFailure::Error(_) | ActivityFailure::Panic(_)
    );
    if retryable && failures < retry.max_attempts() {
        AfterFailure::Retry(retry.delay_after(failures), failures)
    } else {
        AfterFailure::GiveUp
    }
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
        assert!(matches!(
            after_failure(&panic, 0, &p),
            AfterFailure::Retry(_, 1)
        ));
        assert!(matches!(
            after_failure(&panic, 1, &p),
            AfterFailure::Retry(_, 2)
        ));
        assert_eq!(after_failure(&panic, 2, &p), AfterFailure::GiveUp);
        let aborted = ActivityFailure::Aborted("no".into());
        assert_eq!(after_failure(&aborted, 0, &p), AfterFailure::GiveUp);
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
