//! A test kit: a runtime on an in-memory store with a virtual clock, so an
//! orchestration that sleeps for 30 days finishes in milliseconds.
//!
//! Time stands still until the test moves it ([`TestRuntime::advance`]), or
//! until [`TestRuntime::wait`] finds nothing under way (no message due, no
//! activity running, no result on its way) and skips to the next timer or
//! retry. Only this runtime's work counts: on a store shared with another
//! process, what that process would take (its orchestrators and
//! activities, instances it holds) does not stop the clock, nor does an
//! attempt the orchestrator stopped waiting for. The instance then runs
//! exactly as it would have, with `ctx.now()` and every timer on the
//! virtual clock. Activities can be replaced by closures in one test
//! ([`Builder::override_activity`]).
//!
//! ```
//! use std::time::Duration;
//! use durable::{orchestrator, Context, Runtime};
//! use durable::testing::TestRuntime;
//!
//! #[orchestrator]
//! async fn reminder(ctx: Context, days: u64) -> u64 {
//!     ctx.sleep(Duration::from_secs(days * 86_400)).await;
//!     days
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), durable::Error> {
//! let test = TestRuntime::start(Runtime::builder().orchestrator(reminder)).await?;
//! let h = test.client().start(reminder, 30).await?;
//! assert_eq!(test.wait(&h).await?, 30); // 30 virtual days, milliseconds of real time
//! test.shutdown().await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::activity::Activity;
use crate::client::{Client, Handle};
use crate::clock::Clock;
use crate::error::Error;
use crate::orchestrator::Orchestrator;
use crate::runtime::{Builder, Runtime};
use crate::store::Lookahead;

/// How long a wait waits for a store call to end before it looks at the
/// store again while work is under way: a fallback, as work under way
/// ends with a store call that wakes the wait.
const LOOK_AGAIN: Duration = Duration::from_millis(5);

impl Builder {
    /// Runs `f` in place of `activity`'s body (for a test): the same name,
    /// input, output and error types, so the orchestrator under test is
    /// unchanged. Registers the activity if it was not; registering it
    /// afterwards (`.override_activity(a, f).activity(a)`, as a shared
    /// builder function might) keeps the override.
    ///
    /// ```
    /// # use durable::{activity, Runtime};
    /// #[activity]
    /// async fn charge(cents: u64) -> Result<String, String> {
    ///     unreachable!("no payment provider in tests")
    /// }
    /// let builder = Runtime::builder()
    ///     .override_activity(charge, |cents| async move { Ok(format!("receipt-{cents}")) });
    /// # let _ = builder;
    /// ```
    pub fn override_activity<A, F, Fut>(mut self, activity: A, f: F) -> Self
    where
        A: Activity,
        F: Fn(A::Input) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<A::Output, A::Error>> + Send + 'static,
    {
        let _ = activity;
        self.registry_mut()
            .override_activity::<A, _>(move |input| Box::pin(f(input)));
        self
    }
}

/// A runtime for tests: an in-memory store (unless the builder names a
/// SQLite file), a virtual clock that starts at the real time and moves
/// only when told or when everything waits on a timer, and a short poll
/// interval.
#[derive(Debug)]
pub struct TestRuntime {
    runtime: Runtime,
    clock: Clock,
}

impl TestRuntime {
    /// Starts `builder`'s registrations on a virtual clock.
    ///
    /// # Errors
    /// What [`Builder::start`] reports; [`Error::InvalidSetting`] for a
    /// store that keeps its own time (`.store(..)`, `.postgres(..)`): its
    /// timers and leases could not follow the virtual clock.
    pub async fn start(builder: Builder) -> Result<Self, Error> {
        if builder.store_has_own_clock() {
            return Err(Error::InvalidSetting {
                setting: "store",
                reason: "a test runtime runs on a virtual clock, which only the SQLite store \
                         follows: leave the store unset (in memory) or name a file with \
                         `.sqlite(path)`; a store given with `.store(..)` or `.postgres(..)` \
                         keeps time on its own clock"
                    .to_owned(),
            });
        }
        let clock = Clock::virtual_at(SystemTime::now());
        let builder = if builder.has_store() {
            builder
        } else {
            builder.sqlite(":memory:")
        };
        // Leases and locks are renewed on the machine's clock: on a clock a
        // test moves by hours they would lapse under running work, which
        // would then run twice. One process never needs them to lapse.
        let forever = Duration::from_secs(100 * 365 * 86_400);
        let runtime = builder
            .with_clock(clock.clone())
            .poll_interval(Duration::from_millis(10))
            .activity_lease(forever)
            .instance_lock(forever)
            .start()
            .await?;
        Ok(Self { runtime, clock })
    }

    /// A client of the runtime.
    pub fn client(&self) -> Client {
        self.runtime.client()
    }

    /// The virtual time now.
    pub fn now(&self) -> SystemTime {
        self.clock.system_now()
    }

    /// Moves the virtual clock forward by `by`: timers and retries that fall
    /// due meanwhile run now.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.runtime.wake();
    }

    /// Lets the runtime work until nothing is under way, without moving
    /// the clock: what is due now has run.
    ///
    /// # Errors
    /// Store errors.
    pub async fn settle(&self) -> Result<(), Error> {
        while self.look().await?.busy {}
        Ok(())
    }

    /// Looks at what is under way; when something is, returns once a
    /// store call has ended since the look (or after [`LOOK_AGAIN`]), so
    /// the caller's next look may find it over.
    async fn look(&self) -> Result<Lookahead, Error> {
        let ended = self.runtime.store_call_ended().notified();
        tokio::pin!(ended);
        // Registered before the look: a call ending during it still counts.
        ended.as_mut().enable();
        let ahead = self.runtime.lookahead().await?;
        if ahead.busy {
            let _ = tokio::time::timeout(LOOK_AGAIN, ended).await;
        }
        Ok(ahead)
    }

    /// Waits for `handle`'s instance to finish and returns its result:
    /// whenever nothing is under way, the clock skips to the next timer or
    /// retry (auto-skip).
    ///
    /// # Errors
    /// The instance's own result error; [`Error::WaitsForever`] when it has
    /// not finished, nothing is under way and nothing is scheduled (it waits
    /// for an event nobody raised).
    pub async fn wait<O: Orchestrator>(&self, handle: &Handle<O>) -> Result<O::Output, Error> {
        let client = self.client();
        loop {
            let ahead = self.look().await?;
            if ahead.busy {
                continue;
            }
            // Nothing under way and the clock stands still: what the store
            // says now stays true until the clock moves.
            if client
                .status(handle.id())
                .await?
                .runtime_status
                .is_finished()
            {
                return handle.result().await;
            }
            match ahead.next {
                Some(d) => self.advance(d),
                None => {
                    return Err(Error::WaitsForever {
                        id: handle.id().to_owned(),
                    })
                }
            }
        }
    }

    /// Stops the runtime; see [`Runtime::shutdown`].
    ///
    /// # Errors
    /// What [`Runtime::shutdown`] reports.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.runtime.shutdown().await
    }
}
