//! The test kit's virtual clock: how much real time an orchestration that
//! waits for days takes in a test (`durable::testing::TestRuntime`), in
//! memory, as a project's tests would run it.

use std::time::{Duration, Instant};

use durable::testing::TestRuntime;
use durable::{activity, orchestrator, Context, Runtime};

use crate::{median, ms, Settings};

type Res = Result<(), Box<dyn std::error::Error>>;

/// Sleeps 30 days.
#[orchestrator]
async fn month(ctx: Context) -> u64 {
    ctx.sleep(Duration::from_secs(30 * 86_400)).await;
    30
}

#[activity]
async fn poll(hour: u64) -> bool {
    hour >= 999
}

/// Polls once an hour, continuing as new each time, until the job is done:
/// 1,000 polls, each an activity, a timer and a continue-as-new.
#[orchestrator]
async fn hourly(ctx: Context, hour: u64) -> u64 {
    if ctx.call(poll, hour).await.unwrap_or(false) {
        return hour;
    }
    ctx.sleep(Duration::from_secs(3_600)).await;
    ctx.continue_as_new(hour + 1).await
}

/// A 30-day timer and a monitor of 1,000 hourly polls on the virtual
/// clock: the real time each takes, median of the runs.
pub(crate) async fn testkit(s: Settings) -> Res {
    let (mut month_ms, mut polls_ms) = (Vec::new(), Vec::new());
    for _ in 0..s.runs {
        let test = TestRuntime::start(Runtime::builder().orchestrator(month)).await?;
        let real = Instant::now();
        let h = test.client().start(month, ()).await?;
        assert_eq!(test.wait(&h).await?, 30);
        month_ms.push(ms(real.elapsed()));
        test.shutdown().await?;

        let test =
            TestRuntime::start(Runtime::builder().activity(poll).orchestrator(hourly)).await?;
        let real = Instant::now();
        let h = test.client().start(hourly, 0).await?;
        assert_eq!(test.wait(&h).await?, 999);
        polls_ms.push(ms(real.elapsed()));
        test.shutdown().await?;
    }
    println!(
        "testkit: a 30-day timer {:.1} ms, 1,000 hourly polls {:.0} ms of real time (medians of {}; runs {:?} ms)",
        median(&mut month_ms),
        median(&mut polls_ms),
        s.runs,
        polls_ms.iter().map(|x| x.round()).collect::<Vec<_>>()
    );
    Ok(())
}
