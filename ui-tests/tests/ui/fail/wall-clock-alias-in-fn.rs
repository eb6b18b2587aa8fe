use durable::{orchestrator, Context};

#[orchestrator]
async fn stamp(_ctx: Context) -> std::time::SystemTime {
    use std::time::SystemTime as Clock;
    Clock::now()
}

fn main() {
    let _ = stamp;
}
