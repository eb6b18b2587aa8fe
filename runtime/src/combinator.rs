//! Deterministic combinators over durable futures: fan-out/fan-in and races.
//!
//! They poll their children in a fixed order (first to last), and replay
//! delivers completions in the same turns as the first run, so a join yields
//! the same results and a race picks the same winner on every replay.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Which of two raced futures finished first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Either<L, R> {
    /// The first future won.
    Left(L),
    /// The second future won.
    Right(R),
}

/// Waits for all futures and returns their outputs in input order.
///
/// ```no_run
/// # use durable::{activity, orchestrator, Context};
/// # #[activity] async fn double(x: u64) -> u64 { x * 2 }
/// #[orchestrator]
/// async fn fan_out(ctx: Context, n: u64) -> u64 {
///     let calls = (0..n).map(|i| ctx.call(double, i));
///     durable::join_all(calls).await.into_iter().map(|r| r.unwrap_or(0)).sum()
/// }
/// ```
pub fn join_all<I>(futures: I) -> JoinAll<I::Item>
where
    I: IntoIterator,
    I::Item: Future,
{
    let futures: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let outputs = futures.iter().map(|_| None).collect();
    JoinAll {
        futures,
        outputs,
        remaining: 0,
        started: false,
    }
}

/// The future of [`join_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct JoinAll<F: Future> {
    futures: Vec<Option<Pin<Box<F>>>>,
    outputs: Vec<Option<F::Output>>,
    remaining: usize,
    started: bool,
}

// The children are boxed and outputs are never pinned: moving a `JoinAll`
// moves nothing that was pinned.
impl<F: Future> Unpin for JoinAll<F> {}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.started {
            this.started = true;
            this.remaining = this.futures.len();
        }
        for (slot, out) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
            if let Some(f) = slot {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    *out = Some(v);
                    *slot = None;
                    this.remaining -= 1;
                }
            }
        }
        if this.remaining > 0 {
            return Poll::Pending;
        }
        Poll::Ready(this.outputs.iter_mut().filter_map(Option::take).collect())
    }
}

/// Waits for both futures and returns both outputs.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = Box::pin(a);
    let mut b = Box::pin(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                ra = x;
                rb = y;
                Poll::Pending
            }
        }
    })
    .await
}

/// Races two futures: the first to finish wins, the other is dropped. When
/// both are ready in the same turn, `a` wins, on every replay alike.
///
/// The usual use is a deadline: an event against a durable timer.
///
/// ```no_run
/// # use durable::{orchestrator, Context, Either};
/// # use std::time::Duration;
/// #[orchestrator]
/// async fn approval(ctx: Context) -> bool {
///     match durable::select(ctx.wait_event::<bool>("approved"), ctx.sleep(Duration::from_secs(3600))).await {
///         Either::Left(approved) => approved,
///         Either::Right(()) => false, // timed out
///     }
/// }
/// ```
pub async fn select<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = Box::pin(a);
    let mut b = Box::pin(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}

/// Races many futures: returns the first to finish and its index; the rest
/// are dropped. Ties go to the lowest index.
///
/// # Panics
/// If `futures` is empty: a race with no runner never ends.
pub async fn select_all<I>(futures: I) -> (<I::Item as Future>::Output, usize)
where
    I: IntoIterator,
    I::Item: Future,
{
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    assert!(!futures.is_empty(), "select_all needs at least one future");
    std::future::poll_fn(|cx| {
        for (i, f) in futures.iter_mut().enumerate() {
            if let Poll::Ready(v) = f.as_mut().poll(cx) {
                return Poll::Ready((v, i));
            }
        }
        Poll::Pending
    })
    .await
}
