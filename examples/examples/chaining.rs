//! Function chaining: a blog post published in three activities, each
//! one's output the next one's input (load the draft, render it, publish
//! it), and a second post whose draft is missing, so its chain ends at the
//! first step.
//!
//! Run: `cargo run --release -p durable-examples --example chaining`
//! (the database is `chaining.db` in the current directory, or the path
//! given as the first argument).

use durable::Runtime;
use durable_examples::chaining::{self, publish_post};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "chaining.db".to_owned());
    println!("store: {path}");
    let runtime = chaining::register(Runtime::builder().sqlite(&path))
        .start()
        .await?;
    let client = runtime.client();

    for slug in ["hello-world", "no-such-post"] {
        println!("publishing {slug}");
        let post = client.start(publish_post, slug.to_owned()).await?;
        match post.result().await? {
            Ok(published) => println!("published at {}: {}", published.url, published.html),
            Err(reason) => println!("not published: {reason}"),
        }
    }
    runtime.shutdown().await?;
    Ok(())
}
