//! `BTreeMap` and `BTreeSet` iterate in key order, the same on replay; a
//! `HashMap` with an explicit, fixed hasher is deterministic too.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;

use durable::{orchestrator, Context};

type Fixed = BuildHasherDefault<DefaultHasher>;

#[orchestrator]
async fn tally(_ctx: Context, words: Vec<String>) -> Vec<(String, u64)> {
    let mut counts = BTreeMap::new();
    for word in &words {
        *counts.entry(word.clone()).or_insert(0) += 1;
    }
    let unique: BTreeSet<&String> = words.iter().collect();
    let mut fixed: HashMap<&str, u64, Fixed> = HashMap::with_hasher(Fixed::default());
    fixed.insert("unique", unique.len() as u64);
    counts
        .into_iter()
        .chain(fixed.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .collect()
}

fn main() {
    let _ = tally;
}
