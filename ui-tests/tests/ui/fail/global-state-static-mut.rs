use durable::{orchestrator, Context};

static mut RUNS: u64 = 0;

#[orchestrator]
async fn count(_ctx: Context) -> u64 {
    unsafe {
        RUNS += 1;
    }
    1
}

fn main() {
    let _ = count;
}
