//! A bank: three accounts as durable entities, 30 concurrent transfers
//! between them (some refused for lack of funds), each under a critical
//! section, and audits that always find the same total: money is never
//! lost or created.
//!
//! Run: `cargo run --release -p durable-examples --example bank` (the
//! database is `bank.db` in the current directory, or the path given as
//! the first argument).

use durable::Runtime;
use durable_examples::bank::{self, audit, transfer, Account, Transfer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bank.db".to_owned());
    println!("store: {path}");
    let runtime = bank::register(Runtime::builder().sqlite(&path))
        .start()
        .await?;
    let client = runtime.client();
    let accounts = ["alice", "bob", "carol"].map(str::to_owned);
    for a in &accounts {
        if client.entity::<Account>(a).state().await?.is_none() {
            client.entity::<Account>(a).signal().deposit(10_000).await?;
        }
    }
    let total = client
        .start(audit, accounts.to_vec())
        .await?
        .result()
        .await?;
    println!("total before: {total} cents");

    let mut transfers = Vec::new();
    for i in 0..30_usize {
        let t = Transfer {
            from: accounts[i % 3].clone(),
            to: accounts[(i + 1 + i / 3) % 3].clone(),
            amount: 1_000 + (i as i64 * 700) % 9_000,
        };
        if t.from != t.to {
            transfers.push((t.clone(), client.start(transfer, t).await?));
        }
    }
    let (mut done, mut refused) = (0, 0);
    for (t, h) in transfers {
        match h.result().await? {
            Ok(_) => done += 1,
            Err(why) => {
                refused += 1;
                println!("{} -> {} of {}: refused ({why})", t.from, t.to, t.amount);
            }
        }
    }
    let after = client
        .start(audit, accounts.to_vec())
        .await?
        .result()
        .await?;
    for a in &accounts {
        let balance = client
            .entity::<Account>(a)
            .state()
            .await?
            .unwrap_or_default()
            .balance;
        println!("{a}: {balance} cents");
    }
    println!("{done} transfers done, {refused} refused; total after: {after} cents");
    assert_eq!(after, total, "money was lost or created");
    runtime.shutdown().await?;
    Ok(())
}
