//! Retry policies for activity calls.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often, and how far apart, an activity call is attempted when it
/// returns `Err` or panics.
///
/// The default is one attempt: an error reaches the orchestrator at once.
/// Attempts lost to a crashed worker are not counted here: those are always
/// run again.
///
/// ```
/// use durable::RetryPolicy;
/// use std::time::Duration;
/// let policy = RetryPolicy::attempts(5)
///     .backoff(Duration::from_millis(100))
///     .max_backoff(Duration::from_secs(10));
/// assert_eq!(policy.max_attempts(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    coefficient: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    jitter: f64,
    /// When the total timeout ends (microseconds since the Unix epoch): set
    /// from the calling turn's time when the call is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadline: Option<i64>,
    /// The first invalid setting it was given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    invalid: Option<Fault>,
}

/// An invalid setting a policy was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Fault {
    ZeroAttempts,
    NotFinite,
    BelowOne,
    Jitter,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Self::ZeroAttempts => "zero attempts",
            Self::NotFinite => "a coefficient that is not a finite number",
            Self::BelowOne => "a coefficient below 1 (waits would shrink)",
            Self::Jitter => "a jitter fraction outside 0 to 1",
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::attempts(1)
    }
}

impl RetryPolicy {
    /// Up to `max_attempts` attempts in all (at least 1), 1 s apart and
    /// doubling, until changed with the other methods.
    pub fn attempts(max_attempts: u32) -> Self {
        Self {
            invalid: (max_attempts == 0).then_some(Fault::ZeroAttempts),
            max_attempts: max_attempts.max(1),
            initial_backoff_ms: 1000,
            max_backoff_ms: 60_000,
            coefficient: 2.0,
            attempt_timeout_ms: None,
            total_timeout_ms: None,
            jitter: 0.0,
            deadline: None,
        }
    }

    /// Fail an attempt that runs longer than `timeout`: its result is
    /// given up, its lease freed, and it counts as a failed attempt
    /// (retried while attempts remain; the last one ends in
    /// [`ActivityError::TimedOut`](crate::ActivityError::TimedOut)). An
    /// attempt that awaits is dropped at once; one that blocks its thread
    /// cannot be stopped and holds that thread until it returns, its result
    /// ignored.
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout_ms = Some(millis(timeout));
        self
    }

    /// Give up once `timeout` has passed since the call was made, however
    /// many attempts remain: no attempt starts after it, a running one is
    /// cut at it, and a retry whose wait would end past it is not made
    /// ([`ActivityError::TimedOut`](crate::ActivityError::TimedOut)). It is
    /// checked by the worker that takes the call: a call still waiting for
    /// a free worker slot ends when one takes it.
    #[must_use]
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout_ms = Some(millis(timeout));
        self
    }

    /// Spread each wait between attempts randomly by up to `fraction` of it
    /// either way (0 to 1; 0.2 is ±20%), so that many calls failing together
    /// do not retry together.
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        if !(0.0..=1.0).contains(&fraction) {
            self.refuse(Fault::Jitter);
        }
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The per-attempt timeout, if any.
    pub(crate) fn attempt_limit(&self) -> Option<Duration> {
        self.attempt_timeout_ms.map(Duration::from_millis)
    }

    /// The same policy with its total timeout counted from `now` (the
    /// calling turn's time, in microseconds since the Unix epoch).
    pub(crate) fn started_at(mut self, now: i64) -> Self {
        self.deadline = self.total_timeout_ms.map(|ms| {
            now.saturating_add(i64::try_from(ms.saturating_mul(1000)).unwrap_or(i64::MAX))
        });
        self
    }

    /// When the total timeout ends, if there is one.
    pub(crate) fn deadline(&self) -> Option<i64> {
        self.deadline
    }

    /// The jitter fraction.
    pub(crate) fn jitter_fraction(&self) -> f64 {
        self.jitter
    }

    /// The wait before the second attempt.
    #[must_use]
    pub fn backoff(mut self, initial: Duration) -> Self {
        self.initial_backoff_ms = millis(initial);
        self
    }

    /// The longest wait between two attempts.
    #[must_use]
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff_ms = millis(max);
        self
    }

    /// The factor each wait grows by (at least 1).
    #[must_use]
    pub fn coefficient(mut self, coefficient: f64) -> Self {
        if !coefficient.is_finite() {
            self.refuse(Fault::NotFinite);
        } else if coefficient < 1.0 {
            self.refuse(Fault::BelowOne);
        }
        self.coefficient = if coefficient.is_finite() {
            coefficient.max(1.0)
        } else {
            1.0
        };
        self
    }

    fn refuse(&mut self, why: Fault) {
        self.invalid.get_or_insert(why);
    }

    /// Whether the policy is valid: at least one attempt, a first wait no
    /// longer than the longest, a finite coefficient of at least 1, a
    /// jitter fraction in `[0, 1]`. A call made with an invalid policy
    /// fails at once with [`ActivityError::Aborted`](crate::ActivityError::Aborted)
    /// naming the fault, and nothing is scheduled.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(why) = self.invalid {
            return Err(format!("invalid retry policy: {}", why.describe()));
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err(format!(
                "invalid retry policy: the first wait ({} ms) is longer than the longest ({} ms)",
                self.initial_backoff_ms, self.max_backoff_ms
            ));
        }
        Ok(())
    }

    /// The number of attempts allowed.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait after the `failures`-th failed attempt (from 1).
    pub fn delay_after(&self, failures: u32) -> Duration {
        let exp = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        // f64 is exact for any delay worth waiting; the min clamps the rest.
        #[allow(clippy::cast_precision_loss)]
        let ms = (self.initial_backoff_ms as f64) * self.coefficient.powi(exp);
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped to max_backoff_ms first"
        )]
        let ms = ms.min(self.max_backoff_ms as f64) as u64;
        Duration::from_millis(ms)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::attempts(10)
            .backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(500));
        assert_eq!(p.delay_after(1), Duration::from_millis(100));
        assert_eq!(p.delay_after(2), Duration::from_millis(200));
        assert_eq!(p.delay_after(3), Duration::from_millis(400));
        assert_eq!(p.delay_after(4), Duration::from_millis(500));
        assert_eq!(p.delay_after(40), Duration::from_millis(500));
    }

    #[test]
    fn at_least_one_attempt() {
        assert_eq!(RetryPolicy::attempts(0).max_attempts(), 1);
        assert_eq!(RetryPolicy::default().max_attempts(), 1);
    }

    #[test]
    fn invalid_settings_are_named_by_validate() {
        assert!(RetryPolicy::default().validate().is_ok());
        let cases = [
            (RetryPolicy::attempts(0), "zero attempts"),
            (RetryPolicy::attempts(3).coefficient(f64::NAN), "finite"),
            (RetryPolicy::attempts(3).coefficient(0.5), "below 1"),
            (RetryPolicy::attempts(3).jitter(1.5), "jitter"),
            (
                RetryPolicy::attempts(3)
                    .backoff(Duration::from_secs(10))
                    .max_backoff(Duration::from_secs(1)),
                "longer than the longest",
            ),
        ];
        for (policy, why) in cases {
            let err = policy.validate().unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }
}
