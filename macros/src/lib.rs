//! The `#[activity]` and `#[orchestrator]` attribute macros of
//! [`durable`](https://docs.rs/durable). Depend on `durable`, which
//! re-exports them; the generated code names only `::durable` paths.
//!
//! Each macro runs the same stages: `args` (the attribute's grammar),
//! `ast` (typed views of the fn), `check` (misuse errors, and the
//! determinism rules on an orchestrator's body) and `expand` (codegen). The macro holds no runtime
//! logic: it generates a trait impl that calls into the runtime.

mod activity;
mod args;
mod ast;
mod check;
mod entity;
mod errors;
mod expand;
mod orchestrator;

use proc_macro::TokenStream;

/// Turns an `async fn` into an activity: a unit of real work (I/O, clocks,
/// anything) that an orchestrator schedules with `ctx.call`.
///
/// ```
/// use durable::activity;
///
/// /// Doubles.
/// #[activity]
/// async fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// #[activity(name = "Check")]
/// async fn check(x: u64) -> Result<u64, String> {
///     if x < 100 { Ok(x) } else { Err(format!("{x} too big")) }
/// }
/// ```
///
/// The fn becomes a unit value of the same name, with the same visibility
/// and docs, that implements `durable::Activity`: pass it where an activity
/// is expected, as in `ctx.call(double, 21)` or `.activity(double)`.
///
/// # Input and output
///
/// The parameters are the input: none is `()`, one is its type, several are
/// a tuple of their types in order (`ctx.call(add, (1, 2))`). The return
/// type decides the output and the error:
///
/// - written `Result<T, E>`, that is a path whose last segment is `Result`
///   with two type arguments: the output is `T` and an `Err(E)` fails the
///   attempt (retries apply; the orchestrator gets `E` back, typed);
/// - anything else, including no return type: that type (or `()`) is the
///   output and the activity cannot fail (its error type is
///   `durable::Never`). A one-argument alias such as `io::Result<T>` or
///   `anyhow::Result<T>` is such a type, its `Err` a successful output:
///   write `Result<T, E>` out to make `Err` a failure.
///
/// Inputs and outputs are stored in history, so they must be owned
/// `serde` types (`Serialize + DeserializeOwned`); rustc reports one that
/// is not on the type itself.
///
/// # Name
///
/// The name stored in history is the fn's name, or the one given with
/// `#[activity(name = "...")]`. Renaming the fn renames the activity for
/// instances already running; pin the name to rename the fn freely.
///
/// # Testing without a runtime
///
/// The body stays callable as a plain async method of the value:
///
/// ```
/// # use durable::activity;
/// # #[activity]
/// # async fn double(x: u64) -> u64 { x * 2 }
/// # async fn test() {
/// assert_eq!(double.run(21).await, 42);
/// # }
/// ```
///
/// # Errors
///
/// A compile error on the offending tokens when the fn is not `async`; is
/// `const`, `unsafe`, `extern` or variadic; has generics, lifetimes or a
/// `where` clause; takes `self`; or takes or returns a borrowed or
/// `impl Trait` type. All of them are reported in one build.
#[proc_macro_attribute]
pub fn activity(args: TokenStream, item: TokenStream) -> TokenStream {
    activity::expand(args.into(), item.into()).into()
}

/// Turns an `async fn` into an orchestrator: deterministic workflow code
/// that survives crashes and restarts by being replayed from its history.
///
/// ```
/// use durable::{activity, orchestrator, Context};
///
/// # #[activity]
/// # async fn double(x: u64) -> u64 { x * 2 }
/// /// Doubles twice.
/// #[orchestrator]
/// async fn pipeline(ctx: Context, x: u64) -> Result<u64, String> {
///     let a = ctx.call(double, x).await.map_err(|e| e.to_string())?;
///     let b = ctx.call(double, a).await.map_err(|e| e.to_string())?;
///     Ok(b)
/// }
/// ```
///
/// The fn becomes a unit value of the same name, with the same visibility
/// and docs, that implements `durable::Orchestrator`: start it with
/// `client.start(pipeline, 21)` and register it with
/// `.orchestrator(pipeline)`.
///
/// # Signature
///
/// The first parameter is the context, `ctx: Context` (`durable::Context`,
/// bound to a plain name such as `ctx`, `mut ctx` or `_ctx`). The
/// parameters after it are the input, as for `#[activity]`: none is `()`,
/// one is its type, several a tuple. The output is exactly the return type
/// (`()` if none); an `Err` fails the instance. Inputs and outputs must be
/// owned `serde` types.
///
/// The stored name is the fn's name, or the one given with
/// `#[orchestrator(name = "...")]`.
///
/// The activities the body passes to `ctx.call` / `ctx.call_with_retry` by
/// path are listed for the runtime, which checks at start that each one is
/// registered.
///
/// # Determinism
///
/// The body is replayed after every restart, so it must compute the same
/// thing from the same history. A checker rejects what would not: the wall
/// clock, randomness, random ids, real sleeps and timeouts, threads and
/// tasks, an unbiased `select!`, I/O, the environment, hash order and
/// global mutable state, each with a compile error on the offending tokens
/// that names the rule (`[durable::wall_clock]`), says why and what to
/// write instead (`ctx.now()`):
///
/// ```compile_fail
/// # use durable::{orchestrator, Context};
/// #[orchestrator]
/// async fn stamp(_ctx: Context) -> std::time::SystemTime {
///     std::time::SystemTime::now() // error: [durable::wall_clock] ..
/// }
/// ```
///
/// Two escape hatches: `ctx.side_effect(|| ..)`, whose closure runs once
/// and whose value is recorded in history, and
/// `#[durable::allow(rule, reason = "..")]` on a statement, a match arm or
/// (below `#[orchestrator]`) the fn:
///
/// ```
/// # use durable::{orchestrator, Context};
/// # use std::time::SystemTime;
/// #[orchestrator]
/// async fn audit(ctx: Context) -> SystemTime {
///     #[durable::allow(wall_clock, reason = "only logged, never branched on")]
///     let seen = SystemTime::now();
///     eprintln!("replayed at {seen:?}");
///     ctx.side_effect(SystemTime::now)
/// }
/// ```
///
/// The checker reads syntax: a call hidden in a helper fn defined
/// elsewhere is not seen (the runtime fails an instance that awaits a
/// non-durable future instead of letting it hang).
///
/// # Errors
///
/// A compile error on the offending tokens when the context is missing,
/// misplaced, taken by reference or not bound to a name, for the same
/// signature mistakes as `#[activity]`, and for every determinism rule the
/// body breaks. All of them are reported in one build.
#[proc_macro_attribute]
pub fn orchestrator(args: TokenStream, item: TokenStream) -> TokenStream {
    orchestrator::expand(args.into(), item.into()).into()
}

/// Makes the type of an `impl` block a durable entity: each method taking
/// `&mut self` (a change) or `&self` (a read) is an operation, applied one at
/// a time, exactly once, to state stored under a key. The expansion
/// implements `durable::Entity` and adds `<Type>Ops`, the typed proxy whose
/// methods are the operations. `name = ".."` pins the stored type name.
#[proc_macro_attribute]
pub fn entity(args: TokenStream, item: TokenStream) -> TokenStream {
    entity::expand(args.into(), item.into()).into()
}
