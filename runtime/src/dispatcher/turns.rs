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
// Moved once per turn; boxing the large variant would cost an allocation
// per turn instead.
#[allow(clippy::large_enum_variant)]
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

    /// Gives the thread up, in one step under the lock the thread takes to
    /// start a job and to send a result: the job it runs then (which will
    /// never report), the jobs it had not started, and every result it sent
    /// before. `only_over` gives it up only if its job has run that long.
    fn give_up(&mut self, only_over: Option<Duration>) -> Option<GivenUp> {
        let (running, queued) = {
            let mut q = self.lock();
            if let Some(budget) = only_over {
                if q.current.is_none_or(|(_, since)| since.elapsed() < budget) {
                    return None;
                }
            }
            q.retired = true;
            (q.current, std::mem::take(&mut q.jobs))
        };
        self.shared.ready.notify_one();
        let mut sent = Vec::new();
        while let Ok(ran) = self.results.try_recv() {
            sent.push(ran);
        }
        Some(GivenUp {
            running,
            queued,
            sent,
        })
    }
}

/// What giving a runner up leaves.
struct GivenUp {
    /// The job it was running, and since when.
    running: Option<(usize, Instant)>,
    /// The jobs it had not started.
    queued: VecDeque<Job>,
    /// Results it sent before it was given up.
    sent: Vec<Ran>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        // An idle thread exits; a busy one exits after its turn.
        self.lock().retired = true;
        self.shared.ready.notify_one();
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
            let end = loop {
                if left == 0 {
                    break None;
                }
                let wait = match runner.lock().current {
                    Some((_, since)) => self.budget.saturating_sub(since.elapsed()),
                    None => self.budget,
                };
                tokio::select! {
                    // Results first: one already sent is never lost to a
                    // timer that fired at the same moment.
                    biased;
                    got = runner.results.recv() => match got {
                        Some(ran) => {
                            out.push(ran);
                            left -= 1;
                        }
                        // The thread is gone (it cannot panic in a turn).
                        None => break runner.give_up(None).map(|g| (g, End::Lost)),
                    },
                    () = stop.wait() => break runner.give_up(None).map(|g| (g, End::Stop)),
                    () = tokio::time::sleep(wait) => {
                        if let Some(g) = runner.give_up(Some(self.budget)) {
                            break Some((g, End::OverBudget));
                        }
                    }
                }
            };
            let Some((given_up, end)) = end else {
                self.runner = Some(runner);
                break;
            };
            left -= given_up.sent.len();
            out.extend(given_up.sent);
            match (end, given_up.running) {
                (End::Stop, running) => {
                    out.extend(running.map(|(key, _)| Ran::Stopped { key }));
                    out.extend(
                        given_up
                            .queued
                            .into_iter()
                            .map(|j| Ran::Stopped { key: j.key }),
                    );
                    return out;
                }
                (End::OverBudget, Some((key, since))) => out.push(Ran::OverBudget {
                    key,
                    ran: since.elapsed(),
                }),
                // Its job, if it had one, is tried again in a later round.
                (_, Some((key, _))) => out.push(Ran::Stopped { key }),
                (_, None) => {}
            }
            left = left.saturating_sub(usize::from(given_up.running.is_some()));
            jobs = given_up.queued;
        }
        out
    }
}

/// Why a runner was given up.
enum End {
    OverBudget,
    Stop,
    Lost,
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
