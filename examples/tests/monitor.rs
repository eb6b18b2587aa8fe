//! The monitor: done when the job reports done, given up at the deadline,
//! and a history of one round either way, on a real SQLite file.

mod common;

use std::time::Duration;

use common::{builder, PATIENCE};
use durable_examples::monitor::{self, watch_job, Job, Outcome, Watch};

fn job(done_on_check: Option<u32>) -> Job {
    Job {
        name: "export".to_owned(),
        done_on_check,
    }
}

#[tokio::test]
async fn the_monitor_stops_when_the_job_is_done_or_the_deadline_passes() {
    let (_dir, builder) = builder();
    let rt = monitor::register(builder).start().await.unwrap();
    let client = rt.client();
    let every = Duration::from_millis(2);
    let done = client
        .start(watch_job, Watch::new(job(Some(5)), every, PATIENCE))
        .await
        .unwrap();
    let hangs = client
        .start(
            watch_job,
            Watch::new(job(None), every, Duration::from_millis(50)),
        )
        .await
        .unwrap();

    assert_eq!(
        done.result_timeout(PATIENCE).await.unwrap(),
        Outcome::Done { checks: 5 }
    );
    // How many checks fit before the deadline depends on the machine's speed.
    assert!(matches!(
        hangs.result_timeout(PATIENCE).await.unwrap(),
        Outcome::GaveUp { .. }
    ));
    // Each round continued as new: only the last one is in the history
    // (started, its check, the end), not every check so far.
    for id in [done.id(), hangs.id()] {
        let len = client.history(id).await.unwrap().len();
        assert!(len <= 4, "{id}: {len} events");
    }
    rt.shutdown().await.unwrap();
}
