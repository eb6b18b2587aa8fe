//! One piece of work cannot hurt the others: a process takes only work it
//! can run, an activity that blocks its thread or panics while decoding
//! holds only itself, a damaged instance row stops only that instance, and
//! each turn's code runs once.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use common::{builder, db, until, within};
use durable::{activity, orchestrator, ActivityError, Context, FailureKind, RuntimeStatus};
use serde::{Deserialize, Deserializer, Serialize};

#[activity]
async fn flaky_name(x: u64) -> u64 {
    x + 1
}

#[orchestrator]
async fn chain(ctx: Context, x: u64) -> u64 {
    let a = ctx.call(flaky_name, x).await.unwrap();
    ctx.call(flaky_name, a).await.unwrap()
}

#[activity]
async fn unrelated() {}

#[orchestrator]
async fn other(ctx: Context) {
    ctx.call(unrelated, ()).await.unwrap();
}

/// Regression: a process without activity `flaky_name` failed the `chain`
/// instances of another process with "not registered with this worker",
/// and a process without the orchestrator marked its instances stuck. A
/// process now takes only work it can run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_with_different_registrations_share_one_store() {
    let db = db();
    // The other service polls hard, to take whatever it is offered.
    let them = builder(&db)
        .activity(unrelated)
        .orchestrator(other)
        .poll_interval(Duration::from_millis(1))
        .start()
        .await
        .unwrap();
    let us = builder(&db)
        .activity(flaky_name)
        .orchestrator(chain)
        .start()
        .await
        .unwrap();
    let client = us.client();
    let mut handles = Vec::new();
    for i in 0..10 {
        handles.push(client.start(chain, i).await.unwrap());
    }
    let theirs = them.client().start(other, ()).await.unwrap();
    for (i, h) in (0..).zip(&handles) {
        assert_eq!(within(h.result()).await.unwrap(), i + 2);
        let history = client.history(h.id()).await.unwrap();
        assert!(
            !history
                .iter()
                .any(|r| matches!(r.event, durable::history::Event::ActivityFailed { .. })),
            "{history:?}"
        );
    }
    within(theirs.result()).await.unwrap();
    us.shutdown().await.unwrap();
    them.shutdown().await.unwrap();
}

/// Blocks its thread (as blocking I/O would) until the test lets it go.
static BLOCKERS: (Mutex<(u32, bool)>, Condvar) = (Mutex::new((0, false)), Condvar::new());

static UNBLOCKED: AtomicU32 = AtomicU32::new(0);

#[activity]
async fn blocks_thread() {
    let (lock, cv) = &BLOCKERS;
    let mut state = lock.lock().unwrap();
    state.0 += 1;
    cv.notify_all();
    while !state.1 {
        state = cv.wait(state).unwrap();
    }
    UNBLOCKED.fetch_add(1, Ordering::SeqCst);
}

#[orchestrator]
async fn blocker(ctx: Context) {
    ctx.call(blocks_thread, ()).await.unwrap();
}

/// Regression: an activity that blocked its thread froze the runtime (two
/// blocking activities made a 3 ms chain take 2 s). Activities run on
/// threads of their own, apart from the turns and the store hand-overs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_that_block_their_thread_do_not_stall_other_instances() {
    let db = db();
    let rt = builder(&db)
        .activity(blocks_thread)
        .activity(flaky_name)
        .orchestrator(blocker)
        .orchestrator(chain)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let blocked = [
        client.start(blocker, ()).await.unwrap(),
        client.start(blocker, ()).await.unwrap(),
    ];
    // Both block as many threads as this test has for its own runtime.
    tokio::task::spawn_blocking(|| {
        let (lock, cv) = &BLOCKERS;
        let mut state = lock.lock().unwrap();
        while state.0 < 2 {
            state = cv.wait(state).unwrap();
        }
    })
    .await
    .unwrap();
    let h = client.start(chain, 40).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 42);
    assert_eq!(
        UNBLOCKED.load(Ordering::SeqCst),
        0,
        "the chain finished while both blockers still held their threads"
    );
    {
        let (lock, cv) = &BLOCKERS;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    }
    for h in &blocked {
        within(h.result()).await.unwrap();
    }
    rt.shutdown().await.unwrap();
}

/// A type whose decoding panics, as a buggy `Deserialize` impl might.
#[derive(Debug, Serialize)]
struct Bomb(u32);

impl<'de> Deserialize<'de> for Bomb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        assert!(n != 13, "unlucky number");
        Ok(Self(n))
    }
}

#[activity]
async fn takes_bomb(b: Bomb) -> u32 {
    b.0
}

#[orchestrator]
async fn defuse(ctx: Context, n: u32) -> String {
    match ctx.call(takes_bomb, Bomb(n)).await {
        Ok(v) => format!("ok {v}"),
        Err(ActivityError::Panicked(msg)) => format!("panicked: {msg}"),
        Err(e) => format!("other: {e:?}"),
    }
}

/// Regression: a panic in user (de)serialisation inside an activity escaped
/// the attempt's unwind guard, its lease was renewed forever and the
/// instance hung. It is a failed attempt like any panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_decoding_an_activity_input_fails_that_attempt() {
    let db = db();
    let rt = builder(&db)
        .activity(takes_bomb)
        .orchestrator(defuse)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let bad = client.start(defuse, 13).await.unwrap();
    let good = client.start(defuse, 7).await.unwrap();
    let out = within(bad.result()).await.unwrap();
    assert!(
        out.starts_with("panicked: ") && out.contains("unlucky number"),
        "{out}"
    );
    assert_eq!(within(good.result()).await.unwrap(), "ok 7");
    rt.shutdown().await.unwrap();
}

static EFFECTS: AtomicU32 = AtomicU32::new(0);
static LIVE_LOGS: AtomicU32 = AtomicU32::new(0);

#[orchestrator]
#[durable::allow(global_state, reason = "the test counts live runs of this code")]
async fn effect_once(ctx: Context) -> u32 {
    let v = ctx.side_effect(|| EFFECTS.fetch_add(1, Ordering::SeqCst));
    if !ctx.is_replaying() {
        LIVE_LOGS.fetch_add(1, Ordering::SeqCst);
    }
    v
}

/// Regression: a `Started` message fetched from the store and then handed
/// over again in memory ran the instance's first turn twice (the second
/// commit was refused, but `side_effect`'s closure had run twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_turns_code_runs_once_per_committed_turn() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(effect_once)
        .poll_interval(Duration::from_millis(1))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let mut handles = Vec::new();
    for _ in 0..300 {
        handles.push(client.start(effect_once, ()).await.unwrap());
    }
    for h in &handles {
        within(h.result()).await.unwrap();
    }
    assert_eq!(EFFECTS.load(Ordering::SeqCst), 300, "one side effect each");
    assert_eq!(
        LIVE_LOGS.load(Ordering::SeqCst),
        300,
        "one live log line each"
    );
    rt.shutdown().await.unwrap();
}

static EFFECTS_ACROSS: AtomicU32 = AtomicU32::new(0);

#[orchestrator]
#[durable::allow(global_state, reason = "the test counts live runs of this code")]
async fn effect_once_across(ctx: Context) -> u32 {
    ctx.side_effect(|| EFFECTS_ACROSS.fetch_add(1, Ordering::SeqCst))
}

/// Regression: an instance started in one process was handed to its
/// dispatcher in memory while another process, polling the same store,
/// fetched its `Started` message and ran the first turn too (one commit
/// was refused, but the side effect had run twice). An instance handed
/// over is created locked to its creator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_handed_over_in_one_process_does_not_run_in_another() {
    let db = db();
    let start = || {
        builder(&db)
            .orchestrator(effect_once_across)
            .poll_interval(Duration::from_millis(1))
            .start()
    };
    let (a, b) = (start().await.unwrap(), start().await.unwrap());
    let client = a.client();
    let mut handles = Vec::new();
    for _ in 0..300 {
        handles.push(client.start(effect_once_across, ()).await.unwrap());
    }
    for h in &handles {
        within(h.result()).await.unwrap();
    }
    assert_eq!(
        EFFECTS_ACROSS.load(Ordering::SeqCst),
        300,
        "one side effect each, across both processes"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

static EFFECTS_IN_B: AtomicU32 = AtomicU32::new(0);

#[activity]
async fn quick_step() -> u32 {
    1
}

/// Whichever comes first, the activity's result or the event, the turn it
/// arrives in ends the instance.
#[orchestrator]
async fn first_of_two(ctx: Context) -> u32 {
    let _ = durable::select(ctx.call(quick_step, ()), ctx.wait_event::<()>("poke")).await;
    1
}

/// The same orchestrator as process B has it: it counts the turns B runs.
#[orchestrator(name = "first_of_two")]
#[durable::allow(global_state, reason = "the test counts where turns run")]
async fn first_of_two_in_b(ctx: Context) -> u32 {
    let _ = durable::select(ctx.call(quick_step, ()), ctx.wait_event::<()>("poke")).await;
    if !ctx.is_replaying() {
        EFFECTS_IN_B.fetch_add(1, Ordering::SeqCst);
    }
    1
}

/// Regression: the turn an activity result drives in memory ran without the
/// instance lock, so another process, handed an event for the instance by
/// its own client, ran that instance's code too (one commit was refused,
/// but the code had run in both). The instance stays locked to the process
/// whose worker runs its calls: the other one leaves the event in the store
/// for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_driven_by_a_result_in_memory_does_not_run_in_another_process() {
    let db = db();
    let a = builder(&db)
        .activity(quick_step)
        .orchestrator(first_of_two)
        .poll_interval(Duration::from_millis(1))
        .start()
        .await
        .unwrap();
    let b = builder(&db)
        .activity(quick_step)
        .orchestrator(first_of_two_in_b)
        .poll_interval(Duration::from_millis(1))
        .start()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for _ in 0..150 {
        let h = a.client().start(first_of_two, ()).await.unwrap();
        // The race is lost or won; either way is fine.
        match b.client().raise_event(h.id(), "poke", ()).await {
            Ok(()) | Err(durable::Error::InstanceFinished { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        handles.push(h);
    }
    for h in &handles {
        assert_eq!(within(h.result()).await.unwrap(), 1);
    }
    assert_eq!(
        EFFECTS_IN_B.load(Ordering::SeqCst),
        0,
        "process B never ran code of an instance process A was running"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[orchestrator]
async fn waits(ctx: Context) -> String {
    ctx.wait_event::<String>("go").await
}

/// Regression: one instance row that did not decode (a non-numeric
/// `history_len`) made every fetch fail, so no other instance moved. The
/// damaged instance is set aside, stuck with the reason; the rest flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_damaged_instance_row_stops_only_that_instance() {
    let db = db();
    let rt = builder(&db).orchestrator(waits).start().await.unwrap();
    let client = rt.client();
    let damaged = client.start(waits, ()).await.unwrap();
    let healthy = client.start(waits, ()).await.unwrap();
    for h in [&damaged, &healthy] {
        until("the wait to be committed", || async {
            let s = client.status(h.id()).await.unwrap();
            (s.runtime_status == RuntimeStatus::Running).then_some(())
        })
        .await;
    }
    rt.shutdown().await.unwrap();
    // A column of the wrong type on SQLite; PostgreSQL's types refuse
    // that, so there a history length its checksum does not cover.
    let harm = if common::on_postgres() {
        "UPDATE instances SET history_len = history_len + 100 WHERE id = ?1"
    } else {
        "UPDATE instances SET history_len = 'garbage' WHERE id = ?1"
    };
    assert_eq!(common::execute(&db, harm, &[damaged.id()]), 1);
    let rt = builder(&db)
        .orchestrator(waits)
        .stuck_retry(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client.raise_event(damaged.id(), "go", "x").await.unwrap();
    client.raise_event(healthy.id(), "go", "y").await.unwrap();
    let healthy = client.handle(waits, healthy.id());
    assert_eq!(within(healthy.result()).await.unwrap(), "y");
    let (status, failure): (String, String) = until("the damaged one to be set aside", || async {
        let read = |column| {
            common::text(
                &db,
                &format!("SELECT {column} FROM instances WHERE id = ?1"),
                &[damaged.id()],
            )
            .flatten()
        };
        read("failure").map(|f| (read("status").unwrap_or_default(), f))
    })
    .await;
    assert_eq!(status, "stuck");
    let failure: durable::Failure = serde_json::from_str(&failure).unwrap();
    assert_eq!(failure.kind, FailureKind::Corrupt, "{failure:?}");
    rt.shutdown().await.unwrap();
}

static FORGOTTEN: AtomicU32 = AtomicU32::new(0);

#[activity]
async fn notify_later(x: u32) {
    FORGOTTEN.fetch_add(x, Ordering::SeqCst);
}

#[orchestrator]
async fn fire_and_forget(ctx: Context) -> String {
    // Not awaited: the orchestrator returns in this same turn.
    drop(ctx.call(notify_later, 5));
    "done".to_owned()
}

/// Regression: an activity called without `.await` in the orchestrator's
/// last turn was recorded in history but never run. It runs (once or
/// more: activities run at least once); its result is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_called_in_the_last_turn_runs() {
    let db = db();
    let rt = builder(&db)
        .activity(notify_later)
        .orchestrator(fire_and_forget)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(fire_and_forget, ()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "done");
    until("the forgotten call to run", || async {
        (FORGOTTEN.load(Ordering::SeqCst) >= 5).then_some(())
    })
    .await;
    let history = rt.client().history(h.id()).await.unwrap();
    assert!(history
        .iter()
        .any(|r| matches!(&r.event, durable::history::Event::ActivityScheduled { name, .. } if name == "notify_later")));
    rt.shutdown().await.unwrap();
}

/// Held while a replay runs, until the test lets it go.
static REPLAY: (Mutex<(bool, bool)>, Condvar) = (Mutex::new((false, false)), Condvar::new());

#[orchestrator]
#[durable::allow(
    global_state,
    reason = "the test holds the replay to show it runs apart"
)]
async fn long_history(ctx: Context, n: u32) -> u32 {
    let mut sum = 0;
    for i in 0..n {
        sum += ctx.side_effect(|| i);
    }
    if ctx.is_replaying() {
        let (lock, cv) = &REPLAY;
        let mut state = lock.lock().unwrap();
        state.0 = true;
        cv.notify_all();
        while !state.1 {
            state = cv.wait(state).unwrap();
        }
    }
    ctx.wait_event::<()>("go").await;
    sum
}

/// Regression: replay ran inline on the dispatcher, so one long replay (or
/// a slow turn while replaying) stalled every instance. Replays run in the
/// background: other instances finish while one is being rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_instances_finish_while_one_is_replayed() {
    let db = db();
    let start = || {
        builder(&db)
            .activity(flaky_name)
            .orchestrator(long_history)
            .orchestrator(chain)
            .start()
    };
    let rt = start().await.unwrap();
    let client = rt.client();
    let long = client.start(long_history, 2_000).await.unwrap();
    until("the long history to be written", || async {
        let s = client.status(long.id()).await.unwrap();
        (s.history_len > 2_000).then_some(())
    })
    .await;
    rt.shutdown().await.unwrap();
    let rt = start().await.unwrap();
    let client = rt.client();
    // Its next turn needs a replay, which the test holds.
    client.raise_event(long.id(), "go", ()).await.unwrap();
    tokio::task::spawn_blocking(|| {
        let (lock, cv) = &REPLAY;
        let mut state = lock.lock().unwrap();
        while !state.0 {
            state = cv.wait(state).unwrap();
        }
    })
    .await
    .unwrap();
    let h = client.start(chain, 1).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 3);
    assert!(
        long.status().await.unwrap().history_len <= 2_002,
        "the chain finished while the replay was still held"
    );
    {
        let (lock, cv) = &REPLAY;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    }
    let long = client.handle(long_history, long.id());
    assert_eq!(
        within(long.result()).await.unwrap(),
        (0..2_000).sum::<u32>()
    );
    rt.shutdown().await.unwrap();
}
