use durable::{orchestrator, Context};

#[orchestrator(name = "Greet", name = "Hello")]
async fn greet(_ctx: Context, name: String) -> String {
    format!("hello {name}")
}

fn main() {
    let _ = greet;
}
