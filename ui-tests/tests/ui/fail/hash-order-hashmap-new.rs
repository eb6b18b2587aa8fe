use std::collections::HashMap;

use durable::{orchestrator, Context};

#[orchestrator]
async fn tally(_ctx: Context, words: Vec<String>) -> Vec<(String, u64)> {
    let mut counts = HashMap::new();
    for word in words {
        *counts.entry(word).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

fn main() {
    let _ = tally;
}
