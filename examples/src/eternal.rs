//! An aggregator: an eternal orchestration fed by events. It keeps a
//! running total in its input, continuing as new every few events so its
//! history stays short, shows the total as its custom status for clients to
//! read, and returns it when a `close` event comes.

use durable::{orchestrator, Context, Either};
use serde::{Deserialize, Serialize};

/// The event that adds its amount (an `i64`) to the total.
pub const ADD: &str = "add";
/// The event (no data) that ends the aggregation.
pub const CLOSE: &str = "close";

/// The events one execution takes before it continues as new: its history
/// never holds more than these.
pub const EVENTS_PER_EXECUTION: u32 = 5;

/// The running total: the orchestrator's input and output, and its custom
/// status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// The amounts added.
    pub count: u32,
    /// Their sum.
    pub total: i64,
}

/// Adds up `add` events until `close`.
///
/// When both kinds are waiting, `select` takes the `add` first, so every
/// amount raised before the close is counted.
#[orchestrator]
pub async fn aggregate(ctx: Context, tally: Tally) -> Tally {
    let mut tally = tally;
    for _ in 0..EVENTS_PER_EXECUTION {
        match durable::select(ctx.wait_event::<i64>(ADD), ctx.wait_event::<()>(CLOSE)).await {
            Either::Left(amount) => {
                tally.count += 1;
                tally.total += amount;
                ctx.set_custom_status(&tally);
            }
            Either::Right(()) => return tally,
        }
    }
    ctx.continue_as_new(tally).await
}

/// Registers the workflow's orchestrator.
pub fn register(builder: durable::Builder) -> durable::Builder {
    builder.orchestrator(aggregate)
}
