use durable::{orchestrator, Context};

#[orchestrator]
fn greet(_ctx: Context, name: String) -> String {
    format!("hello {name}")
}

fn main() {
    let _ = greet;
}
