use durable::{orchestrator, Context};

#[orchestrator]
async fn configure(_ctx: Context) -> String {
    std::fs::read_to_string("config.toml").unwrap_or_default()
}

fn main() {
    let _ = configure;
}
