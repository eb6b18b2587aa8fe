use durable::{orchestrator, Context};

#[orchestrator]
async fn region(_ctx: Context) -> String {
    std::env::var("REGION").unwrap_or_default()
}

fn main() {
    let _ = region;
}
