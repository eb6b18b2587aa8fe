//! Activities: the units of real work an orchestrator schedules, and what
//! the orchestrator learns when one of them fails.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A boxed, sendable future, the shape every generated `invoke` returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A unit of real work (I/O, clocks, anything) that an orchestrator schedules
/// with [`Context::call`](crate::Context::call).
///
/// Implemented by `#[activity]` on a unit struct named like the function; you
/// rarely implement it by hand. Activities run at least once: a crashed
/// worker's attempt is run again, so make side effects idempotent with
/// [`ActivityInfo::idempotency_key`].
pub trait Activity: Copy + Send + Sync + 'static {
    /// The input: the function's parameters (none is `()`, several a tuple).
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The value a successful attempt produces.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The typed error of a failed attempt ([`Never`] for an activity whose
    /// return type is not written `Result<T, E>`).
    type Error: Serialize + DeserializeOwned + Send + 'static;
    /// The name stored in history; the function's name unless set with
    /// `#[activity(name = "...")]`. Renaming it breaks running instances.
    const NAME: &'static str;

    /// Runs one attempt.
    fn invoke(self, input: Self::Input) -> BoxFuture<Result<Self::Output, Self::Error>>;

    /// Whether a failed attempt with `error` may be attempted again under
    /// the call's [`RetryPolicy`](crate::RetryPolicy). `#[activity]`
    /// answers with [`Retryable::is_retryable`] when the error type
    /// implements [`Retryable`], and `true` otherwise.
    fn is_retryable(error: &Self::Error) -> bool {
        let _ = error;
        true
    }
}

/// Lets an activity's error type decide which errors are worth another
/// attempt: a card declined stays declined, a timeout may pass.
///
/// ```
/// use durable::{activity, Retryable};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// enum ChargeError { Declined, ProviderDown }
///
/// impl Retryable for ChargeError {
///     fn is_retryable(&self) -> bool {
///         matches!(self, ChargeError::ProviderDown)
///     }
/// }
///
/// #[activity]
/// async fn charge(cents: u64) -> Result<String, ChargeError> {
///     if cents > 100_000 { Err(ChargeError::Declined) } else { Ok("receipt".into()) }
/// }
/// ```
pub trait Retryable {
    /// Whether another attempt may succeed.
    fn is_retryable(&self) -> bool;
}

/// The error type of an activity that cannot fail: no value of it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Never {}

impl fmt::Display for Never {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Never {}

/// Why an activity call failed, as the orchestrator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ActivityError<E> {
    /// The activity returned `Err` on its last allowed attempt.
    Failed(E),
    /// The activity panicked on its last allowed attempt; the panic message.
    Panicked(String),
    /// The activity could not be run at all (its input did not decode, or
    /// its output or error did not encode or was over the payload limit);
    /// the reason.
    Aborted(String),
    /// Its attempts were lost too often: each one crashed or stalled the
    /// worker running it. The reason.
    Poisoned(String),
    /// Its last attempt ran past the policy's attempt timeout, or its
    /// attempts ran past the total timeout
    /// ([`RetryPolicy::attempt_timeout`](crate::RetryPolicy::attempt_timeout),
    /// [`RetryPolicy::total_timeout`](crate::RetryPolicy::total_timeout)).
    TimedOut(String),
}

impl<E> ActivityError<E> {
    /// The activity's own error, if it returned one.
    pub fn into_failed(self) -> Option<E> {
        match self {
            Self::Failed(e) => Some(e),
            Self::Panicked(_) | Self::Aborted(_) | Self::Poisoned(_) | Self::TimedOut(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for ActivityError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => e.fmt(f),
            Self::Panicked(msg) => write!(f, "activity panicked: {msg}"),
            Self::Aborted(msg) => write!(f, "activity aborted: {msg}"),
            Self::Poisoned(msg) => write!(f, "activity poisoned: {msg}"),
            Self::TimedOut(msg) => write!(f, "activity timed out: {msg}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ActivityError<E> {}

/// Who is running: the instance, the call's sequence number and the attempt.
///
/// Read it inside an activity with [`ActivityInfo::current`]; outside a
/// runtime (a plain unit test) there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityInfo {
    pub(crate) instance_id: String,
    pub(crate) seq: u64,
    pub(crate) attempt: u32,
    pub(crate) name: &'static str,
    pub(crate) cancel: Cancel,
}

/// The cancellation signal of one attempt, set by its worker.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cancel(std::sync::Arc<(std::sync::atomic::AtomicBool, tokio::sync::Notify)>);

impl Cancel {
    /// Tells the attempt.
    pub(crate) fn cancel(&self) {
        self.0 .0.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.0 .0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl PartialEq for Cancel {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cancel {}

tokio::task_local! {
    static CURRENT: ActivityInfo;
}

impl ActivityInfo {
    /// The attempt being run by this task, or `None` outside a runtime.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Whether nobody waits for this call's result any more: its instance
    /// was terminated or finished (or the attempt's lease was lost to
    /// another worker). A long activity should stop; whatever it returns
    /// now is dropped. Noticed when the worker renews its leases (every
    /// third of [`Builder::activity_lease`](crate::Builder::activity_lease)).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_set()
    }

    /// Resolves once [`ActivityInfo::is_cancelled`]: race it against the
    /// work (`tokio::select!`) to stop at once.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.cancel.0 .1.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// The instance that scheduled this call.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The call's sequence number in its instance: stable across attempts.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The activity's stored name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A key that is the same for every attempt of this call and different
    /// for every other call: give it to the outside world to dedupe retries.
    pub fn idempotency_key(&self) -> String {
        format!("{}#{}", self.instance_id, self.seq)
    }

    /// Runs `fut` with `self` as the current attempt.
    pub(crate) async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}
