//! The aggregator: a running total clients read as custom status while
//! events arrive, across several executions, and the total returned on
//! close, on a real SQLite file.

mod common;

use common::{builder, until, PATIENCE};
use durable_examples::eternal::{self, aggregate, Tally, ADD, CLOSE, EVENTS_PER_EXECUTION};

#[tokio::test]
async fn the_total_is_readable_while_it_runs_and_returned_on_close() {
    let (_dir, builder) = builder();
    let rt = eternal::register(builder).start().await.unwrap();
    let client = rt.client();
    let h = client.start(aggregate, Tally::default()).await.unwrap();
    // More events than one execution takes: it continues as new twice.
    let amounts: Vec<i64> = (1..=12).collect();
    assert!(amounts.len() > 2 * EVENTS_PER_EXECUTION as usize);
    for &amount in &amounts {
        client.raise_event(h.id(), ADD, amount).await.unwrap();
    }
    let want = Tally {
        count: 12,
        total: 78,
    };
    until("the running total of every amount", || async {
        let status = client.status(h.id()).await.unwrap();
        let tally = status.custom_status_as::<Tally>().unwrap()?;
        (tally == want).then_some(())
    })
    .await;
    // The history holds the current execution only: its start and the
    // events it took, never every event so far.
    let len = client.history(h.id()).await.unwrap().len();
    assert!(len <= EVENTS_PER_EXECUTION as usize + 1, "{len} events");

    client.raise_event(h.id(), ADD, -8_i64).await.unwrap();
    client.raise_event(h.id(), CLOSE, ()).await.unwrap();
    assert_eq!(
        h.result_timeout(PATIENCE).await.unwrap(),
        Tally {
            count: 13,
            total: 70
        }
    );
    rt.shutdown().await.unwrap();
}
