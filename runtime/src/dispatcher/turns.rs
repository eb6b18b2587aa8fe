//! Runs a round's turns on a thread of their own, watched against a time
//! budget. Orchestrator code is user code: a turn that never yields (a loop
//! with no `.await`) cannot be preempted, so it must not hold the
//! dispatcher. A turn over budget is given up: its thread is left to it,
//! its instance is failed by the round, and the turns queued behind it move
//! to a new thread. The dispatcher itself only waits, so it stops on time
//! however long a turn runs.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::history::{Event, Failure, FailureKind};
use crate::registry::Registry;
use crate::replay::{Execution, Parked, Turn};
use crate::shutdown::Shutdown;
use crate::unwind::panic_message;

/// One turn to run: the instance's execution and what it is delivered.
pub(super) struct Job {
    /// The caller's index for the job.
    pub(super) key: usize,
    pub(super) execution: Execution,
    pub(super) now: i64,
    pub(super) incoming: Vec<Event>,
    pub(super) span: tracing::Span,
}

/// How a job ended.
pub(super) enum Ran {
    /// The turn ran: the execution after it, and the turn.
    Done {
        key: usize,
        execution: Execution,
        turn: Result<Turn, Parked>,
    },
    /// The turn ran past the budget and was given up (its execution with it).
    OverBudget { key: usize, ran: Duration },
    /// The dispatcher is stopping: the turn was given up, or never started.
    Stopped { key: usize },
}

/// The state one runner thread shares with the dispatcher.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The job running now, and since when.
    current: Option<(usize, Instant)>,
    /// Set when the dispatcher gives up on the thread: it exits when it
    /// next looks, and its results go nowhere.
    retired: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// One turn thread and the channel its results come back on.
struct Runner {
    shared: Arc<Shared>,
    results: mpsc::UnboundedReceiver<Ran>,
}

impl Runner {
    fn spawn(registry: &Arc<Registry>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let (tx, results) = mpsc::unbounded_channel();
        let (on_thread, registry) = (Arc::clone(&shared), Arc::clone(registry));
        std::thread::Builder::new()
            .name("durable-turns".into())
            .spawn(move || serve(&on_thread, &registry, &tx))?;
        Ok(Self { shared, results })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn submit(&self, jobs: impl IntoIterator<Item = Job>) {
        self.lock().jobs.extend(jobs);
        self.shared.ready.notify_one();
    }

    /// Gives the thread up; returns the jobs it had not started.
    fn retire(&self) -> VecDeque<Job> {
        let mut q = self.lock();
        q.retired = true;
        let rest = std::mem::take(&mut q.jobs);
        drop(q);
        self.shared.ready.notify_one();
        rest
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // An idle thread exits; a busy one exits after its turn.
        self.retire();
    }
}

/// The runner thread: takes jobs in order until retired.
fn serve(shared: &Shared, registry: &Registry, results: &mpsc::UnboundedSender<Ran>) {
    loop {
        let mut job = {
            let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if q.retired {
                    return;
                }
                if let Some(job) = q.jobs.pop_front() {
                    q.current = Some((job.key, Instant::now()));
                    break job;
                }
                q = shared.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let (key, now) = (job.key, job.now);
        let incoming = std::mem::take(&mut job.incoming);
        let turn = job.span.in_scope(|| {
            catch_unwind(AssertUnwindSafe(|| {
                job.execution.run_turn(now, incoming, registry)
            }))
            .unwrap_or_else(|p| {
                Err(Parked(Failure::new(
                    FailureKind::Panic,
                    format!("a turn panicked: {}", panic_message(&*p)),
                )))
            })
        });
        // The result is sent under the lock, so that a dispatcher giving
        // the thread up sees the job either running or done, never neither.
        let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.current = None;
        if q.retired {
            // Given up on: whatever the turn did is dropped unseen.
            return;
        }
        let _ = results.send(Ran::Done {
            key,
            execution: job.execution,
            turn,
        });
        drop(q);
    }
}

/// The dispatcher's turn thread, replaced when a turn runs over budget.
pub(super) struct Turns {
    registry: Arc<Registry>,
    budget: Duration,
    runner: Option<Runner>,
}

impl Turns {
    pub(super) fn new(registry: Arc<Registry>, budget: Duration) -> Self {
        Self {
            registry,
            budget,
            runner: None,
        }
    }

    /// The budget of one turn.
    pub(super) fn budget(&self) -> Duration {
        self.budget
    }

    /// Runs `jobs` and returns how each ended, in the order they ended. A
    /// job over budget is given up; once `stop` is set every job not done is.
    pub(super) async fn run(&mut self, jobs: Vec<Job>, stop: &mut Shutdown) -> Vec<Ran> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut left = jobs.len();
        let mut jobs: VecDeque<Job> = jobs.into();
        while left > 0 {
            let runner = match self.runner.take() {
                Some(r) => r,
                None => match Runner::spawn(&self.registry) {
                    Ok(r) => r,
                    Err(e) => {
                        // No thread to be had: run the turns here, unwatched,
                        // rather than not at all.
                        tracing::warn!(
                            "dispatcher: starting a turn thread: {e}; running turns inline"
                        );
                        out.extend(jobs.drain(..).map(|j| run_inline(j, &self.registry)));
                        return out;
                    }
                },
            };
            let mut runner = runner;
            runner.submit(jobs.drain(..));
            let given_up = loop {
                if left == 0 {
                    break None;
                }
                let wait = match runner.lock().current {
                    Some((_, since)) => self.budget.saturating_sub(since.elapsed()),
                    None => self.budget,
                };
                tokio::select! {
                    got = runner.results.recv() => match got {
                        Some(ran) => {
                            out.push(ran);
                            left -= 1;
                        }
                        // The thread is gone (it cannot panic in a turn): its
                        // job, if it had one, is tried again in a later round.
                        None => {
                            if let Some((key, _)) = runner.lock().current {
                                out.push(Ran::Stopped { key });
                                left -= 1;
                            }
                            break Some(false);
                        }
                    },
                    () = tokio::time::sleep(wait) => {
                        let current = runner.lock().current;
                        if let Some((key, since)) = current.filter(|(_, s)| s.elapsed() >= self.budget) {
                            out.push(Ran::OverBudget { key, ran: since.elapsed() });
                            left -= 1;
                            break Some(false);
                        }
                    }
                    () = stop.wait() => break Some(true),
                }
            };
            match given_up {
                None => self.runner = Some(runner),
                Some(false) => jobs = runner.retire(),
                Some(true) => {
                    let rest = runner.retire();
                    if let Some((key, _)) = runner.lock().current {
                        out.push(Ran::Stopped { key });
                    }
                    out.extend(rest.into_iter().map(|j| Ran::Stopped { key: j.key }));
                    // Results sent before the thread was given up still count.
                    while let Ok(ran) = runner.results.try_recv() {
                        out.push(ran);
                    }
                    return out;
                }
            }
        }
        out
    }
}

/// Runs a job on the caller's thread (when no thread can be started).
fn run_inline(mut job: Job, registry: &Registry) -> Ran {
    let incoming = std::mem::take(&mut job.incoming);
    let turn = job
        .span
        .in_scope(|| job.execution.run_turn(job.now, incoming, registry));
    Ran::Done {
        key: job.key,
        execution: job.execution,
        turn,
    }
}

/// The failure recorded for an instance whose turn ran over budget.
pub(super) fn over_budget(orchestrator: &str, budget: Duration, ran: Duration) -> Failure {
    Failure::new(
        FailureKind::TurnTimeout,
        format!(
            "a turn of `{orchestrator}` ran {ran:?} without yielding, over the budget of \
             {budget:?} (`turn_timeout`): orchestrator code must not loop or block between \
             `.await`s; move long work into an activity"
        ),
    )
}
