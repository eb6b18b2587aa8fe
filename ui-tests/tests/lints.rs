//! The macros' expansion is clean under the strictest user lints: this file
//! must build without a warning under `cargo clippy --all-targets`, and the
//! generated impls carry what the signatures say.
#![deny(warnings, clippy::pedantic, missing_docs, unreachable_pub)]

use std::time::Duration;

use durable::{activity, orchestrator, Activity, Context, Never, Orchestrator, RetryPolicy};

/// Doubles.
#[activity]
pub async fn double(x: u64) -> u64 {
    x * 2
}

/// Passes small numbers.
///
/// # Errors
/// When `x` is 100 or more.
#[activity(name = "Check")]
pub async fn check(x: u64) -> Result<u64, String> {
    if x < 100 {
        Ok(x)
    } else {
        Err(format!("{x} too big"))
    }
}

/// Adds; several parameters make a tuple input.
#[activity]
pub async fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Does nothing; no parameters and no return type.
#[activity]
pub async fn tick() {}

#[activity]
async fn private_echo(text: String) -> String {
    text
}

/// The pipeline.
#[orchestrator]
pub async fn pipeline(ctx: Context, x: u64) -> Result<u64, String> {
    let doubled = ctx.call(double, x).await.map_err(|e| e.to_string())?;
    let checked = ctx
        .call_with_retry(check, doubled, RetryPolicy::attempts(3))
        .await
        .map_err(|e| e.to_string())?;
    ctx.sleep(Duration::from_millis(20)).await;
    let bonus: u64 = ctx.wait_event("bonus").await;
    let parts = durable::join_all((0..10).map(|i| ctx.call(double, i))).await;
    let sum: u64 = parts.into_iter().map(Result::unwrap_or_default).sum();
    let total = ctx
        .call(add, (checked, sum))
        .await
        .map_err(|e| e.to_string())?;
    ctx.call(tick, ()).await.map_err(|e| e.to_string())?;
    let echoed = ctx
        .call(private_echo, String::from("hi"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(total + bonus + u64::try_from(echoed.len()).unwrap_or_default())
}

/// No input, no output, unused context.
#[orchestrator(name = "Idle")]
pub async fn idle(_ctx: Context) {}

/// Several inputs, an output that is not a `Result`.
#[orchestrator]
pub async fn several(ctx: Context, a: u64, label: String) -> Option<u64> {
    let doubled = ctx.call(double, a).await.ok()?;
    Some(doubled + u64::try_from(label.len()).ok()?)
}

#[test]
fn the_types_come_from_the_signatures() {
    fn activity<A: Activity<Input = I, Output = O, Error = E>, I, O, E>(_: A) {}
    fn orchestrator<W: Orchestrator<Input = I, Output = O>, I, O>(_: W) {}
    activity::<_, u64, u64, Never>(double);
    activity::<_, u64, u64, String>(check);
    activity::<_, (u64, u64), u64, Never>(add);
    activity::<_, (), (), Never>(tick);
    activity::<_, String, String, Never>(private_echo);
    orchestrator::<_, u64, Result<u64, String>>(pipeline);
    orchestrator::<_, (), ()>(idle);
    orchestrator::<_, (u64, String), Option<u64>>(several);
}

#[test]
fn names_failures_and_callees() {
    assert_eq!(<double as Activity>::NAME, "double");
    assert_eq!(<check as Activity>::NAME, "Check");
    assert_eq!(<idle as Orchestrator>::NAME, "Idle");
    assert!(pipeline::is_failure(&Err(String::new())));
    assert!(!pipeline::is_failure(&Ok(1)));
    assert!(!several::is_failure(&None));
    assert!(!idle::is_failure(&()));
    assert_eq!(
        pipeline::activities(),
        ["double", "Check", "add", "tick", "private_echo"]
    );
    assert_eq!(several::activities(), ["double"]);
    assert!(idle::activities().is_empty());
}

#[tokio::test]
async fn an_activity_runs_without_a_runtime() {
    assert_eq!(double.run(21).await, 42);
    assert_eq!(check.run(200).await, Err("200 too big".to_owned()));
    assert_eq!(add.invoke((2, 3)).await, Ok(5));
}

/// A counter entity: its expansion must be as clean as the rest.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    n: u64,
}

#[durable::entity(name = "Tally")]
impl Tally {
    /// Adds.
    pub fn add(&mut self, by: u64) {
        self.n += by;
    }

    /// Reads.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.n
    }

    /// Deletes the entity.
    pub fn clear(&mut self, ctx: &mut durable::EntityContext) {
        ctx.delete();
    }

    /// Not an operation: no `self`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[test]
fn an_entity_names_its_operations_reads() {
    use durable::Entity;
    assert_eq!(<Tally as Entity>::NAME, "Tally");
    assert!(Tally::__is_read("get"));
    assert!(!Tally::__is_read("add"));
    assert!(!Tally::__is_read("new"));
    assert_eq!(Tally::new().get(), 0);
}
