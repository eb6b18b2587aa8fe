use durable::orchestrator;

#[orchestrator]
async fn greet(name: String) -> String {
    format!("hello {name}")
}

fn main() {}
