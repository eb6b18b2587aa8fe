use durable::{orchestrator, Context};

#[orchestrator]
async fn greet(name: String, _ctx: Context) -> String {
    format!("hello {name}")
}

fn main() {}
