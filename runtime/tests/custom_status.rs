//! Custom status: a value the orchestrator sets and clients read, typed,
//! from `status`; it survives a restart and is not set again by replay.

mod common;

use common::{builder, db, until, within};
use durable::{orchestrator, Context, RuntimeStatus};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Progress {
    stage: String,
    done: u32,
}

/// Reports each stage, waiting for a `next` event between them.
#[orchestrator]
async fn staged(ctx: Context, stages: u32) -> u32 {
    for done in 0..stages {
        ctx.set_custom_status(&Progress {
            stage: format!("stage {done}"),
            done,
        });
        ctx.wait_event::<()>("next").await;
    }
    ctx.set_custom_status(&Progress {
        stage: "finished".to_owned(),
        done: stages,
    });
    stages
}

async fn progress_of(client: &durable::Client, id: &str) -> Option<Progress> {
    let s = client.status(id).await.unwrap();
    s.custom_status_as::<Progress>().unwrap()
}

/// Each turn's status is readable once it commits, typed, across a restart
/// with no live state cached (every turn replays), and the last one stays
/// after the instance finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_read_the_status_each_turn_set_across_a_restart() {
    let db = db();
    let start = || builder(&db).orchestrator(staged).cache_size(0).start();
    let rt = start().await.unwrap();
    let client = rt.client();
    let h = client.start(staged, 3).await.unwrap();
    let id = h.id().to_owned();
    let want = |stage: &str, done| Progress {
        stage: stage.to_owned(),
        done,
    };
    let first = until("the first status", || async {
        progress_of(&client, &id).await
    })
    .await;
    assert_eq!(first, want("stage 0", 0));
    client.raise_event(&id, "next", ()).await.unwrap();
    until("the second status", || async {
        (progress_of(&client, &id).await == Some(want("stage 1", 1))).then_some(())
    })
    .await;
    rt.shutdown().await.unwrap();

    let rt = start().await.unwrap();
    let client = rt.client();
    assert_eq!(
        progress_of(&client, &id).await,
        Some(want("stage 1", 1)),
        "kept across the restart"
    );
    client.raise_event(&id, "next", ()).await.unwrap();
    until("the third status", || async {
        (progress_of(&client, &id).await == Some(want("stage 2", 2))).then_some(())
    })
    .await;
    client.raise_event(&id, "next", ()).await.unwrap();
    assert_eq!(
        within(client.handle(staged, id.clone()).result())
            .await
            .unwrap(),
        3
    );
    let s = client.status(&id).await.unwrap();
    assert_eq!(s.runtime_status, RuntimeStatus::Completed);
    assert_eq!(
        s.custom_status_as::<Progress>().unwrap(),
        Some(want("finished", 3))
    );
    // A wrong type is the caller's typed error, not a panic.
    assert!(matches!(
        s.custom_status_as::<u64>(),
        Err(durable::Error::Payload { .. })
    ));
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn no_status(_ctx: Context) -> u32 {
    1
}

#[tokio::test]
async fn an_instance_that_set_no_status_has_none() {
    let db = db();
    let rt = builder(&db).orchestrator(no_status).start().await.unwrap();
    let h = rt.client().start(no_status, ()).await.unwrap();
    within(h.result()).await.unwrap();
    let s = rt.client().status(h.id()).await.unwrap();
    assert!(s.custom_status.is_none());
    assert_eq!(s.custom_status_as::<u32>().unwrap(), None);
    rt.shutdown().await.unwrap();
}
