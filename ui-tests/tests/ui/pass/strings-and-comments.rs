//! Forbidden calls in string literals and comments are only text.

use durable::{orchestrator, Context};

#[orchestrator]
async fn text(_ctx: Context) -> String {
    // SystemTime::now(), rand::random(), std::fs::read("x")
    /* tokio::spawn(async {}) */
    let advice = "write ctx.now() instead of SystemTime::now()";
    format!("{advice}: std::env::var(\"HOME\")")
}

fn main() {
    let _ = text;
}
