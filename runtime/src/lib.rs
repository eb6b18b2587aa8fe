//! Durable, deterministic orchestrations written as plain `async fn`s.
//!
//! `#[orchestrator]` turns an async fn into a replayable, event-sourced
//! workflow; `#[activity]` turns one into a unit of real work it schedules.
//! A [`Runtime`] runs them on an embedded SQLite file, and every step
//! survives crashes and restarts.
//!
//! ```no_run
//! use durable::{activity, orchestrator, Context, Runtime};
//!
//! #[activity]
//! async fn double(x: u64) -> u64 {
//!     x * 2
//! }
//!
//! #[orchestrator]
//! async fn twice(ctx: Context, x: u64) -> u64 {
//!     let once = ctx.call(double, x).await.unwrap_or(0);
//!     ctx.call(double, once).await.unwrap_or(0)
//! }
//!
//! # async fn run() -> Result<(), durable::Error> {
//! let runtime = Runtime::builder()
//!     .sqlite("app.db")
//!     .activity(double)
//!     .orchestrator(twice)
//!     .start()
//!     .await?;
//! let handle = runtime.client().start(twice, 5).await?;
//! assert_eq!(handle.result().await?, 20);
//! runtime.shutdown().await?;
//! # Ok(())
//! # }
//! ```

// The layers, bottom up; each module imports only those above it here.
// 1. The vocabulary.
mod bytes;
pub mod history;
// 2. Leaf modules: ids, the clock, configuration, policy, errors, lifecycle.
mod clock;
mod config;
mod error;
mod ids;
mod policy;
mod retry;
mod shutdown;
mod status;
mod unwind;
// 3. Storage: the trait, its neutral error, its conformance suite, backends.
pub mod store;
// 4. The orchestrator's world: context, activities, orchestrators, replay.
mod activity;
mod combinator;
mod context;
pub mod entity;
mod orchestrator;
mod registry;
mod replay;
// 5. Mailboxes between the parts; waiters.
mod mailbox;
mod waiters;
// 6. The parts.
mod client;
mod dispatcher;
mod worker;
// 7. Wiring, and checks of code against histories.
mod check;
pub mod diff;
pub mod metrics;
mod runtime;
pub mod testing;
pub mod time;
mod why;

pub use activity::{Activity, ActivityError, ActivityInfo, BoxFuture, Never, Retryable};
pub use bytes::Bytes;
pub use check::Incompatible;
pub use client::{
    Client, ClientSignal, EntityPage, EntityRef, Handle, IfExists, Page, Query, Signalled,
    StartOptions, MAX_NAME_LEN,
};
pub use combinator::{join, join_all, select, select_all, Either, JoinAll};
pub use context::{
    ActivityCall, ChildCall, ChildError, Context, ContinueAsNew, EntityCall, EntityLock,
    EventDataError, EventWait, LockWait, Timer, TryEventWait,
};
pub use durable_macros::{activity, entity, orchestrator};
pub use entity::{Entity, EntityContext, EntityId};
pub use error::Error;
pub use history::{ChildFailure, EntityError, Failure, FailureKind, RuntimeStatus};
pub use orchestrator::Orchestrator;
pub use retry::RetryPolicy;
pub use runtime::{Builder, Runtime};
pub use status::InstanceStatus;
pub use store::{StoreError, Synchronous};
pub use why::Blocker;

/// Logs from orchestrator code once, not again on every replay: like
/// `tracing`'s macros of the same names, with the context first. The event
/// is emitted inside the turn's span (instance id, orchestrator, turn).
///
/// ```
/// # use durable::{orchestrator, Context};
/// #[orchestrator]
/// async fn shipping(ctx: Context, order: u64) -> u64 {
///     durable::info!(ctx, order, "shipping started");
///     ctx.sleep(std::time::Duration::from_secs(1)).await;
///     durable::info!(ctx, "order {order} shipped");
///     order
/// }
/// ```
#[macro_export]
macro_rules! info {
    ($ctx:expr, $($arg:tt)+) => {
        if !$crate::Context::is_replaying(&$ctx) {
            $crate::__private::tracing::info!($($arg)+);
        }
    };
}

/// As [`info!`], at the `WARN` level.
#[macro_export]
macro_rules! warn {
    ($ctx:expr, $($arg:tt)+) => {
        if !$crate::Context::is_replaying(&$ctx) {
            $crate::__private::tracing::warn!($($arg)+);
        }
    };
}

/// As [`info!`], at the `ERROR` level.
#[macro_export]
macro_rules! error {
    ($ctx:expr, $($arg:tt)+) => {
        if !$crate::Context::is_replaying(&$ctx) {
            $crate::__private::tracing::error!($($arg)+);
        }
    };
}

/// As [`info!`], at the `DEBUG` level.
#[macro_export]
macro_rules! debug {
    ($ctx:expr, $($arg:tt)+) => {
        if !$crate::Context::is_replaying(&$ctx) {
            $crate::__private::tracing::debug!($($arg)+);
        }
    };
}

/// As [`info!`], at the `TRACE` level.
#[macro_export]
macro_rules! trace {
    ($ctx:expr, $($arg:tt)+) => {
        if !$crate::Context::is_replaying(&$ctx) {
            $crate::__private::tracing::trace!($($arg)+);
        }
    };
}

/// What generated code names. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
    pub use std::boxed::Box;
    pub use std::vec::Vec;
    pub use tracing;

    use crate::Activity;

    /// The stored name of an activity value, for the callee list.
    pub fn activity_name<A: Activity>(_: A) -> &'static str {
        A::NAME
    }

    /// Autoref dispatch: `(&IsFailure(&out)).is_failure()` is `is_err()` for
    /// a `Result` and `false` for anything else.
    pub struct IsFailure<'a, T>(pub &'a T);

    /// Picks `Result::is_err` when the output is a `Result`.
    pub trait ResultFailure {
        /// Whether the output is an `Err`.
        fn is_failure(&self) -> bool;
    }
    impl<T, E> ResultFailure for IsFailure<'_, Result<T, E>> {
        fn is_failure(&self) -> bool {
            self.0.is_err()
        }
    }

    /// Autoref dispatch: `(&IsRetryable(&err)).is_retryable()` is the
    /// error's [`Retryable`](crate::Retryable) answer, or `true`.
    pub struct IsRetryable<'a, T>(pub &'a T);

    /// Picks the error type's own answer.
    pub trait RetryableByTrait {
        /// Whether another attempt may succeed.
        fn is_retryable(&self) -> bool;
    }
    impl<T: crate::activity::Retryable> RetryableByTrait for IsRetryable<'_, T> {
        fn is_retryable(&self) -> bool {
            crate::activity::Retryable::is_retryable(self.0)
        }
    }

    /// The fallback for error types without an answer: retry.
    pub trait RetryableByDefault {
        /// Always `true`.
        fn is_retryable(&self) -> bool;
    }
    impl<T> RetryableByDefault for &IsRetryable<'_, T> {
        fn is_retryable(&self) -> bool {
            true
        }
    }

    /// The fallback for outputs that are not a `Result`.
    pub trait ValueFailure {
        /// Always `false`.
        fn is_failure(&self) -> bool;
    }
    impl<T> ValueFailure for &IsFailure<'_, T> {
        fn is_failure(&self) -> bool {
            false
        }
    }
}

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
