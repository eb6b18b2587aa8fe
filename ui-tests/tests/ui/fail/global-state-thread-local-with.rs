use std::cell::Cell;

use durable::{orchestrator, Context};

thread_local! {
    static RUNS: Cell<u64> = const { Cell::new(0) };
}

#[orchestrator]
async fn count(_ctx: Context) -> u64 {
    RUNS.with(|runs| {
        runs.set(runs.get() + 1);
        runs.get()
    })
}

fn main() {
    let _ = count;
}
