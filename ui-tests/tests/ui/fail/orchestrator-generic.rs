use durable::{orchestrator, Context};

#[orchestrator]
async fn echo<T>(_ctx: Context, value: T) -> T {
    value
}

fn main() {}
