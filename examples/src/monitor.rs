//! A monitor: a job running elsewhere is checked on a durable timer until
//! it reports done or a deadline passes. Each round continues as new with
//! the state carried in its input, so the history holds one round however
//! long the wait.

use std::time::{Duration, SystemTime};

use durable::{activity, orchestrator, Context};
use serde::{Deserialize, Serialize};

/// A job running somewhere else (an export, a build, a deployment),
/// simulated: it reports done on check number `done_on_check`, or never.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's name.
    pub name: String,
    /// The check on which it reports done; `None` for a job that hangs.
    pub done_on_check: Option<u32>,
}

/// The monitor's whole state, carried from one round to the next as the
/// input it continues as new with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// The job watched.
    pub job: Job,
    /// The time between two checks.
    pub every: Duration,
    /// How long to keep checking before giving up.
    pub give_up_after: Duration,
    /// When to give up: set by the first round, from its turn's time.
    pub deadline: Option<SystemTime>,
    /// The checks made so far.
    pub checks: u32,
}

impl Watch {
    /// A watch on `job` that has not started yet.
    pub fn new(job: Job, every: Duration, give_up_after: Duration) -> Self {
        Self {
            job,
            every,
            give_up_after,
            deadline: None,
            checks: 0,
        }
    }
}

/// How the watch ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The job reported done on this check.
    Done {
        /// The checks it took.
        checks: u32,
    },
    /// The deadline passed first.
    GaveUp {
        /// The checks made.
        checks: u32,
    },
}

/// Asks the job whether it is done (simulated; a real one would call the
/// service running it). `check` counts from 1.
#[activity]
pub async fn is_done(job: Job, check: u32) -> bool {
    let done = job.done_on_check.is_some_and(|n| check >= n);
    let state = if done { "done" } else { "still running" };
    println!("  activity: check {check} of {}: {state}", job.name);
    done
}

/// One round: check the job; if it is not done and time is left, sleep
/// until the next check (or the deadline, for a last one) and continue as
/// new.
#[orchestrator]
pub async fn watch_job(ctx: Context, watch: Watch) -> Outcome {
    let deadline = watch
        .deadline
        .unwrap_or_else(|| ctx.now() + watch.give_up_after);
    let checks = watch.checks + 1;
    // A failed check counts as "not done yet": the next round asks again.
    let done = ctx
        .call(is_done, (watch.job.clone(), checks))
        .await
        .unwrap_or(false);
    if done {
        return Outcome::Done { checks };
    }
    let now = ctx.now();
    if now < deadline {
        ctx.sleep_until((now + watch.every).min(deadline)).await;
        let next = Watch {
            deadline: Some(deadline),
            checks,
            ..watch
        };
        return ctx.continue_as_new(next).await;
    }
    Outcome::GaveUp { checks }
}

/// Registers the workflow's orchestrator and activity.
pub fn register(builder: durable::Builder) -> durable::Builder {
    builder.activity(is_done).orchestrator(watch_job)
}
