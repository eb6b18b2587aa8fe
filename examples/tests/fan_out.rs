//! Fan-out/fan-in: one activity per document, counts in document order, on
//! a real SQLite file.

mod common;

use common::{builder, PATIENCE};
use durable_examples::fan_out::{self, word_count, Document, WordCount};

#[tokio::test]
async fn every_document_is_counted_and_the_counts_added_up() {
    let (_dir, builder) = builder();
    let rt = fan_out::register(builder).start().await.unwrap();
    let documents: Vec<Document> = (1..=20)
        .map(|n| Document {
            name: format!("doc-{n}"),
            text: vec!["word"; n].join(" "),
        })
        .collect();
    let h = rt.client().start(word_count, documents).await.unwrap();
    let want = WordCount {
        per_document: (1..=20).map(|n| (format!("doc-{n}"), n as u64)).collect(),
        total: (1..=20).sum(),
    };
    assert_eq!(h.result_timeout(PATIENCE).await.unwrap(), Ok(want));
    rt.shutdown().await.unwrap();
}
