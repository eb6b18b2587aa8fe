use durable::{orchestrator, Context};

#[orchestrator(retries = 2)]
async fn greet(_ctx: Context, name: String) -> String {
    format!("hello {name}")
}

fn main() {
    let _ = greet;
}
