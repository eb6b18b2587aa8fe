//! `#[durable::allow(rule, reason = "..")]` allows a rule in one statement,
//! a match arm, or (below `#[orchestrator]`) the whole fn; the macro
//! removes the attribute.

use std::collections::HashMap;
use std::time::SystemTime;

use durable::{orchestrator, Context};

#[orchestrator]
#[durable::allow(hash_order, reason = "used for lookups only, never iterated")]
async fn allowed(ctx: Context, key: Option<String>) -> u64 {
    let mut index = HashMap::new();
    index.insert("a".to_owned(), 1);
    #[durable::allow(wall_clock, reason = "only logged, never branched on")]
    let seen = SystemTime::now();
    eprintln!("seen at {seen:?}");
    match key {
        #[durable::allow(env, reason = "a default that is the same on every machine")]
        None => std::env::var("DEFAULT_KEY").map_or(0, |key| key.len() as u64),
        Some(key) => index.get(&key).copied().unwrap_or(ctx.random() % 2),
    }
}

fn main() {
    let _ = allowed;
}
