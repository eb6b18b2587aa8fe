//! The aggregator entity: concurrent signals each counted once, reads that
//! do not change it, a reset that returns what it cleared.

mod common;

use common::{builder, until};
use durable::{orchestrator, Context};
use durable_examples::aggregator::{self, Readings};

#[orchestrator]
async fn mean_then_reset(ctx: Context, key: String) -> (Option<u64>, Readings) {
    let mean = ctx.entity::<Readings>(&key).mean().await.unwrap_or(None);
    let cleared = ctx
        .entity::<Readings>(&key)
        .reset()
        .await
        .unwrap_or_default();
    (mean, cleared)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signals_are_each_counted_once() {
    let (_dir, builder) = builder();
    let rt = aggregator::register(builder)
        .orchestrator(mean_then_reset)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..10_u64 {
        let client = client.clone();
        senders.spawn(async move {
            for i in 1..=20_u64 {
                client
                    .entity::<Readings>("k")
                    .signal()
                    .add(sender * 100 + i)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let want = Readings {
        count: 200,
        total: (0..10_u64)
            .flat_map(|s| (1..=20).map(move |i| s * 100 + i))
            .sum(),
        max: 920,
    };
    let got = until("every reading counted", || async {
        client
            .entity::<Readings>("k")
            .state()
            .await
            .unwrap()
            .filter(|r| r.count >= 200)
    })
    .await;
    assert_eq!(got, want);
    let h = client.start(mean_then_reset, "k".to_owned()).await.unwrap();
    let (mean, cleared) = h.result().await.unwrap();
    assert_eq!(mean, Some(want.total / 200));
    assert_eq!(cleared, want);
    assert_eq!(
        client.entity::<Readings>("k").state().await.unwrap(),
        Some(Readings::default())
    );
    rt.shutdown().await.unwrap();
}
