//! Sub-orchestrations: a sales report whose parent orchestration starts one
//! child orchestration per region and adds up what they return; each child
//! fans out over its region's stores. Then a report naming a region that
//! does not exist, whose child's error reaches the parent.
//!
//! Run: `cargo run --release -p durable-examples --example children`
//! (the database is `children.db` in the current directory, or the path
//! given as the first argument).

use durable::Runtime;
use durable_examples::children::{self, sales_report};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "children.db".to_owned());
    println!("store: {path}");
    let runtime = children::register(Runtime::builder().sqlite(&path))
        .start()
        .await?;
    let client = runtime.client();

    for regions in [vec!["north", "south", "west"], vec!["north", "atlantis"]] {
        let regions: Vec<String> = regions.into_iter().map(str::to_owned).collect();
        println!("report on {regions:?}");
        let report = client.start(sales_report, regions.clone()).await?;
        match report.result().await? {
            Ok(report) => {
                for (region, sales) in &report.by_region {
                    println!("{region:>8}: {sales:>6}");
                }
                println!("{:>8}: {:>6}", "total", report.total);
            }
            Err(reason) => println!("no report: {reason}"),
        }
        // The children are instances of their own: "{parent}:{seq}".
        for seq in 0..regions.len() {
            let child = client.status(&format!("{}:{seq}", report.id())).await?;
            println!("  child {}: {:?}", child.id, child.runtime_status);
        }
    }
    runtime.shutdown().await?;
    Ok(())
}
