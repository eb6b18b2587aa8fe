use durable::{orchestrator, Context};

#[orchestrator]
async fn configure(_ctx: Context) -> usize {
    let config = (
        #[durable::allow(io, reason = "read once at the first turn")]
        std::fs::read_to_string("config.toml"),
        1,
    );
    config.1
}

fn main() {
    let _ = configure;
}
