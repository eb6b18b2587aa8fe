//! Human interaction: three requests, each waiting for a manager's answer
//! (an event) raced against a durable timeout, escalated to a director when
//! the manager is silent. The manager approves the first; nobody answers
//! the second in time, so the director is asked, and (reading the custom
//! status to see that) rejects it; nobody answers the third at all.
//!
//! Run: `cargo run --release -p durable-examples --example approval`
//! (the database is `approval.db` in the current directory, or the path
//! given as the first argument).

use std::time::Duration;

use durable::Runtime;
use durable_examples::approval::{self, approve, Request, APPROVAL, DIRECTOR, ESCALATED_APPROVAL};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "approval.db".to_owned());
    println!("store: {path}");
    let runtime = approval::register(Runtime::builder().sqlite(&path))
        .start()
        .await?;
    let client = runtime.client();
    let request = |what: &str| Request {
        what: what.to_owned(),
        manager_timeout: Duration::from_millis(300),
        director_timeout: Duration::from_millis(300),
    };

    let laptop = client.start(approve, request("a new laptop")).await?;
    let offsite = client.start(approve, request("a team offsite")).await?;
    let yacht = client.start(approve, request("a company yacht")).await?;

    println!("manager: approving {}", laptop.id());
    client.raise_event(laptop.id(), APPROVAL, true).await?;

    // The director answers once the request reaches them: its custom status
    // names whose answer it waits for.
    loop {
        let status = client.status(offsite.id()).await?;
        if status.custom_status_as::<String>()?.as_deref() == Some(DIRECTOR) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("director: rejecting {}", offsite.id());
    client
        .raise_event(offsite.id(), ESCALATED_APPROVAL, false)
        .await?;

    for (what, request) in [("laptop", laptop), ("offsite", offsite), ("yacht", yacht)] {
        println!("{what}: {:?}", request.result().await?);
    }
    runtime.shutdown().await?;
    Ok(())
}
