use durable::{orchestrator, Context};

#[orchestrator]
async fn greet(_ctx: &Context, name: String) -> String {
    format!("hello {name}")
}

fn main() {}
