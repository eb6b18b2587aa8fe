//! Fan-out/fan-in: the words of many documents are counted at once, one
//! activity call per document, and the counts are added up when all have
//! come back (`durable::join_all`).

use durable::{activity, orchestrator, Context};
use serde::{Deserialize, Serialize};

/// A document to count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Its name.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// What the count found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordCount {
    /// Each document's name and word count, in the order given.
    pub per_document: Vec<(String, u64)>,
    /// All the words.
    pub total: u64,
}

/// Counts the words in one text.
#[activity]
pub async fn count_words(name: String, text: String) -> u64 {
    let words = text.split_whitespace().count() as u64;
    println!("  activity: {name} has {words} words");
    words
}

/// Fans out one `count_words` call per document and fans in their counts.
/// The calls are all scheduled in one turn and run concurrently; `join_all`
/// gives their results in the order of `documents`, on every replay alike.
/// A call that fails fails the whole count.
#[orchestrator]
pub async fn word_count(ctx: Context, documents: Vec<Document>) -> Result<WordCount, String> {
    let calls = documents
        .iter()
        .map(|d| ctx.call(count_words, (d.name.clone(), d.text.clone())));
    let mut per_document = Vec::with_capacity(documents.len());
    for (document, count) in documents.iter().zip(durable::join_all(calls).await) {
        per_document.push((document.name.clone(), count.map_err(|e| e.to_string())?));
    }
    let total = per_document.iter().map(|(_, n)| n).sum();
    Ok(WordCount {
        per_document,
        total,
    })
}

/// Registers the workflow's orchestrator and activity.
pub fn register(builder: durable::Builder) -> durable::Builder {
    builder.activity(count_words).orchestrator(word_count)
}
