//! The monitor on the test kit's virtual clock: hourly checks for a day
//! take milliseconds, and the count of checks before the deadline is exact.
//! On a real SQLite file.

mod common;

use std::time::Duration;

use durable::testing::TestRuntime;
use durable_examples::monitor::{self, watch_job, Job, Outcome, Watch};

const HOUR: Duration = Duration::from_secs(3_600);

fn job(done_on_check: Option<u32>) -> Job {
    Job {
        name: "export".to_owned(),
        done_on_check,
    }
}

#[tokio::test]
async fn the_monitor_stops_when_the_job_is_done_or_the_deadline_passes() {
    let (_dir, builder) = common::builder();
    let test = TestRuntime::start(monitor::register(builder))
        .await
        .unwrap();
    let client = test.client();
    let start = test.now();
    let done = client
        .start(watch_job, Watch::new(job(Some(5)), HOUR, 24 * HOUR))
        .await
        .unwrap();
    let hangs = client
        .start(watch_job, Watch::new(job(None), HOUR, 24 * HOUR))
        .await
        .unwrap();
    assert_eq!(test.wait(&done).await.unwrap(), Outcome::Done { checks: 5 });
    // One check an hour from the start to the deadline, both included.
    assert_eq!(
        test.wait(&hangs).await.unwrap(),
        Outcome::GaveUp { checks: 25 }
    );
    assert_eq!(test.now().duration_since(start).unwrap(), 24 * HOUR);
    // Each round continued as new: only the last one is in the history
    // (started, its check, the end), not every check so far.
    for id in [done.id(), hangs.id()] {
        let len = client.history(id).await.unwrap().len();
        assert!(len <= 4, "{id}: {len} events");
    }
    test.shutdown().await.unwrap();
}
