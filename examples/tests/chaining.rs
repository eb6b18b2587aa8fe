//! Function chaining: each step's output feeds the next, and a failed step
//! ends the chain, on a real SQLite file.

mod common;

use common::{builder, PATIENCE};
use durable_examples::chaining::{self, publish_post, Published};

#[tokio::test]
async fn a_draft_is_loaded_rendered_and_published() {
    let (_dir, builder) = builder();
    let rt = chaining::register(builder).start().await.unwrap();
    let h = rt
        .client()
        .start(publish_post, "hello-world".to_owned())
        .await
        .unwrap();
    assert_eq!(
        h.result_timeout(PATIENCE).await.unwrap(),
        Ok(Published {
            url: "https://blog.example/hello-world".to_owned(),
            html: "<h1>Hello, world</h1><p>A first post.</p><p>It survived a restart.</p>"
                .to_owned(),
        })
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_draft_ends_the_chain_at_its_first_step() {
    let (_dir, builder) = builder();
    let rt = chaining::register(builder).start().await.unwrap();
    let client = rt.client();
    let h = client
        .start(publish_post, "no-such-post".to_owned())
        .await
        .unwrap();
    assert_eq!(
        h.result_timeout(PATIENCE).await.unwrap(),
        Err("no draft called `no-such-post`".to_owned())
    );
    let calls: Vec<_> = client
        .history(h.id())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            durable::history::Event::ActivityScheduled { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(calls, ["load_draft"], "render and publish never ran");
    rt.shutdown().await.unwrap();
}
