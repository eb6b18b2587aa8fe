//! `Instant` and `HashMap` mentioned only in types, never constructed or
//! iterated, are fine.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use durable::{orchestrator, Context};

#[orchestrator]
async fn types_only(ctx: Context) -> usize {
    fn size(index: &HashMap<String, u64>) -> usize {
        index.len()
    }
    let deadline: Option<Instant> = None;
    let index: Option<HashMap<String, u64>> = None;
    ctx.sleep(Duration::from_millis(1)).await;
    usize::from(deadline.is_some()) + index.as_ref().map_or(0, size)
}

fn main() {
    let _ = types_only;
}
