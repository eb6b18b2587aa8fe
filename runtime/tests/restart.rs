//! A runtime shut down while instances wait on timers, events and
//! activities, then started again on the same file, finishes every instance
//! with the right result and loses no activity.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::{builder, db, has, until, within, Db};
use durable::history::Event;
use durable::{activity, orchestrator, ActivityInfo, Context, Runtime, RuntimeStatus};
use tokio::sync::Notify;

/// Which runtime is running: 1 before the restart, 2 after.
static LIFE: AtomicU32 = AtomicU32::new(1);
/// Attempts started, by idempotency key: the runtime each ran in.
static STARTED: Mutex<BTreeMap<String, Vec<u32>>> = Mutex::new(BTreeMap::new());
/// Attempts completed, by idempotency key: the runtime each ran in.
static DONE: Mutex<BTreeMap<String, Vec<u32>>> = Mutex::new(BTreeMap::new());
/// Closed during the first runtime, so its attempts are still running when
/// it shuts down; opened for the second.
static GATE_OPEN: AtomicBool = AtomicBool::new(false);
static GATE: Notify = Notify::const_new();

fn note(log: &Mutex<BTreeMap<String, Vec<u32>>>) {
    let key = ActivityInfo::current()
        .expect("runs under a runtime")
        .idempotency_key();
    log.lock()
        .unwrap()
        .entry(key)
        .or_default()
        .push(LIFE.load(Ordering::SeqCst));
}

#[activity]
async fn slow_add(x: u64) -> u64 {
    note(&STARTED);
    loop {
        let opened = GATE.notified();
        if GATE_OPEN.load(Ordering::SeqCst) {
            break;
        }
        opened.await;
    }
    note(&DONE);
    x + 1
}

#[orchestrator]
async fn waits_on_activity(ctx: Context, x: u64) -> u64 {
    let a = ctx.call(slow_add, x).await.unwrap_or(0);
    ctx.call(slow_add, a).await.unwrap_or(0)
}

/// How long the timers wait: long enough that none fires between being
/// committed and the shutdown (checked below, not assumed).
const TIMER_MS: u64 = 2_000;

#[orchestrator]
async fn waits_on_timer(ctx: Context, x: u64) -> u64 {
    ctx.sleep(Duration::from_millis(TIMER_MS)).await;
    x * 10
}

#[orchestrator]
async fn waits_on_event(ctx: Context, x: u64) -> u64 {
    let y: u64 = ctx.wait_event("y").await;
    x + y
}

async fn start(db: &Db) -> Runtime {
    builder(db)
        .activity(slow_add)
        .orchestrator(waits_on_activity)
        .orchestrator(waits_on_timer)
        .orchestrator(waits_on_event)
        // The first life's attempts never finish (their gate is shut): stop
        // without waiting for them, their leases given back at once.
        .shutdown_grace(Duration::ZERO)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_waiting_at_shutdown_finish_after_a_restart() {
    let db = db();
    let rt = start(&db).await;
    let client = rt.client();
    let mut ids = Vec::new();
    for i in 0..5u64 {
        ids.push((
            "a",
            client
                .start(waits_on_activity, i)
                .await
                .unwrap()
                .id()
                .to_owned(),
            i + 2,
        ));
        ids.push((
            "t",
            client
                .start(waits_on_timer, i)
                .await
                .unwrap()
                .id()
                .to_owned(),
            i * 10,
        ));
        ids.push((
            "e",
            client
                .start(waits_on_event, i)
                .await
                .unwrap()
                .id()
                .to_owned(),
            i + 100,
        ));
    }
    // Stop once the first activities run, the timers are set and the event
    // waits are committed.
    let first_calls: BTreeSet<String> = ids
        .iter()
        .filter(|(kind, _, _)| *kind == "a")
        .map(|(_, id, _)| format!("{id}#0"))
        .collect();
    until("the first activity of each instance to start", || async {
        let started = STARTED.lock().unwrap();
        first_calls
            .iter()
            .all(|key| started.contains_key(key))
            .then_some(())
    })
    .await;
    for (kind, id, _) in &ids {
        until("every instance to commit its first turn", || async {
            let history = client.history(id).await.unwrap();
            let ready = match *kind {
                "t" => has(&history, |e| matches!(e, Event::TimerCreated { .. })),
                _ => client.status(id).await.unwrap().runtime_status == RuntimeStatus::Running,
            };
            ready.then_some(())
        })
        .await;
    }
    rt.shutdown().await.unwrap();

    // What the first runtime left: every instance still waiting.
    {
        let store = common::store(&db);
        for (kind, id, _) in &ids {
            let history = store.history(id).unwrap().expect("exists");
            let status = store.status(id).unwrap().expect("exists");
            assert_eq!(
                status.runtime_status,
                RuntimeStatus::Running,
                "{id} ({kind}) was waiting at shutdown: {history:?}"
            );
            assert!(
                !has(&history, |e| matches!(
                    e,
                    Event::ActivityCompleted { .. } | Event::TimerFired { .. }
                )),
                "{id} ({kind}) was waiting at shutdown: {history:?}"
            );
        }
    }
    assert!(
        DONE.lock().unwrap().is_empty(),
        "no attempt finished in the first runtime"
    );

    LIFE.store(2, Ordering::SeqCst);
    GATE_OPEN.store(true, Ordering::SeqCst);
    GATE.notify_waiters();
    let rt = start(&db).await;
    let client = rt.client();
    for (kind, id, _) in &ids {
        if *kind == "e" {
            client.raise_event(id, "y", 100u64).await.unwrap();
        }
    }
    for (kind, id, want) in &ids {
        let got = match *kind {
            "a" => within(client.handle(waits_on_activity, id.as_str()).result()).await,
            "t" => within(client.handle(waits_on_timer, id.as_str()).result()).await,
            _ => within(client.handle(waits_on_event, id.as_str()).result()).await,
        };
        assert_eq!(got.unwrap(), *want, "instance {id} ({kind})");
    }
    let started = STARTED.lock().unwrap().clone();
    let done = DONE.lock().unwrap().clone();
    // Two calls per activity instance, each completed once, after the
    // restart; the first ones had been cut off in the first runtime and
    // were run again.
    assert_eq!(done.len(), 10, "every call ran: {done:?}");
    for (key, lives) in &done {
        assert_eq!(lives, &[2], "{key} completed once, after the restart");
    }
    for key in &first_calls {
        assert_eq!(
            started[key].first(),
            Some(&1),
            "{key} was running in the first runtime: {started:?}"
        );
        assert!(
            started[key].contains(&2),
            "{key} ran again after the restart: {started:?}"
        );
    }
    rt.shutdown().await.unwrap();
}
