//! Changing orchestrator code safely: versions side by side, `patched`
//! branches, recorded histories as fixtures, and the whole-database check.

mod common;

use common::{builder, db, until, within};
use durable::history::{Event, HistoryExport};
use durable::{activity, orchestrator, Context, FailureKind, RuntimeStatus};

#[activity]
async fn old_step(x: u64) -> u64 {
    x + 1
}

#[activity]
async fn new_step(x: u64) -> u64 {
    x + 100
}

/// Version 1 of `flow`, kept registered while its instances run.
#[orchestrator(name = "flow", version = 1)]
async fn flow_v1(ctx: Context, x: u64) -> String {
    let y = ctx.call(old_step, x).await.unwrap_or(0);
    let _: () = ctx.wait_event("go").await;
    format!("v1:{y}")
}

/// Version 2: another first step.
#[orchestrator(name = "flow", version = 2)]
async fn flow(ctx: Context, x: u64) -> String {
    let y = ctx.call(new_step, x).await.unwrap_or(0);
    let _: () = ctx.wait_event("go").await;
    format!("v2:{y}")
}

fn history_has_call(history: &[durable::history::HistoryRecord], name: &str) -> bool {
    history
        .iter()
        .any(|r| matches!(&r.event, Event::ActivityScheduled { name: n, .. } if n == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_versions_side_by_side_each_finish_their_own_instances_across_a_restart() {
    let db = db();
    let with_v1 = || {
        builder(&db)
            .activity(old_step)
            .activity(new_step)
            .orchestrator(flow_v1)
    };
    let rt = with_v1().start().await.unwrap();
    let client = rt.client();
    let old = client.start(flow_v1, 1).await.unwrap();
    waiting(&client, old.id()).await;
    rt.shutdown().await.unwrap();

    // The deploy: version 2 is new, version 1 stays for its instances.
    let rt = with_v1()
        .orchestrator(flow)
        .cache_size(0)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let new = client.start(flow, 2).await.unwrap();
    client.raise_event(old.id(), "go", ()).await.unwrap();
    client.raise_event(new.id(), "go", ()).await.unwrap();
    let old = client.handle(flow_v1, old.id());
    assert_eq!(within(old.result()).await.unwrap(), "v1:2");
    assert_eq!(within(new.result()).await.unwrap(), "v2:102");
    assert!(history_has_call(
        &client.history(new.id()).await.unwrap(),
        "new_step"
    ));
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_a_version_no_longer_registered_is_parked_not_failed() {
    let db = db();
    let rt = builder(&db)
        .activity(old_step)
        .orchestrator(flow_v1)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let old = client.start(flow_v1, 1).await.unwrap();
    rt.shutdown().await.unwrap();
    let rt = builder(&db)
        .activity(new_step)
        .orchestrator(flow)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client.raise_event(old.id(), "go", ()).await.unwrap();
    let status = until("the old instance to be parked", || async {
        let s = client.status(old.id()).await.unwrap();
        (s.runtime_status == RuntimeStatus::Stuck).then_some(s)
    })
    .await;
    let failure = status.failure.expect("a diagnostic");
    assert_eq!(failure.kind, FailureKind::UnregisteredOrchestrator);
    assert!(failure.message.contains("version 1"), "{failure}");
    assert!(failure.message.contains("[2]"), "{failure}");
    rt.shutdown().await.unwrap();
}

/// Before the patch.
#[orchestrator(name = "patchy")]
async fn before_patch(ctx: Context, x: u64) -> u64 {
    let y = ctx.call(old_step, x).await.unwrap_or(0);
    let _: () = ctx.wait_event("go").await;
    y
}

/// With the patch: old histories keep the old path.
#[orchestrator(name = "patchy")]
async fn with_patch(ctx: Context, x: u64) -> u64 {
    let y = if ctx.patched("bigger-step") {
        ctx.call(new_step, x).await.unwrap_or(0)
    } else {
        ctx.call(old_step, x).await.unwrap_or(0)
    };
    let _: () = ctx.wait_event("go").await;
    y
}

/// After the old branch was removed.
#[orchestrator(name = "patchy")]
async fn after_patch(ctx: Context, x: u64) -> u64 {
    let y = ctx.call(new_step, x).await.unwrap_or(0);
    let _: () = ctx.wait_event("go").await;
    y
}

async fn waiting(client: &durable::Client, id: &str) {
    until("the instance to wait for go", || async {
        let h = client.history(id).await.unwrap();
        h.iter()
            .any(|r| matches!(r.event, Event::ActivityCompleted { .. }))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_keeps_old_histories_on_the_old_path_and_its_removal_replays() {
    let db = db();
    let steps = || {
        builder(&db)
            .activity(old_step)
            .activity(new_step)
            .cache_size(0)
    };
    let rt = steps().orchestrator(before_patch).start().await.unwrap();
    let client = rt.client();
    let old = client.start(before_patch, 1).await.unwrap();
    waiting(&client, old.id()).await;
    rt.shutdown().await.unwrap();

    let rt = steps().orchestrator(with_patch).start().await.unwrap();
    let client = rt.client();
    let new = client.start(with_patch, 1).await.unwrap();
    waiting(&client, new.id()).await;
    client.raise_event(old.id(), "go", ()).await.unwrap();
    let old = client.handle(with_patch, old.id());
    assert_eq!(within(old.result()).await.unwrap(), 2, "the old path");
    let history = client.history(new.id()).await.unwrap();
    assert!(history
        .iter()
        .any(|r| matches!(&r.event, Event::Patched { patch, .. } if patch == "bigger-step")));
    rt.shutdown().await.unwrap();

    // The old branch is gone; the new instance's marker is passed over.
    let rt = steps().orchestrator(after_patch).start().await.unwrap();
    let client = rt.client();
    client.raise_event(new.id(), "go", ()).await.unwrap();
    let new = client.handle(after_patch, new.id());
    assert_eq!(within(new.result()).await.unwrap(), 101, "the new path");
    rt.shutdown().await.unwrap();
}

/// The checkout recorded in `fixtures/checkout.json`.
#[orchestrator(name = "checkout")]
async fn checkout(ctx: Context, x: u64) -> u64 {
    let a = ctx.call(old_step, x).await.unwrap_or(0);
    ctx.sleep(std::time::Duration::from_millis(1)).await;
    ctx.call(new_step, a).await.unwrap_or(0)
}

/// An incompatible change: the steps swapped.
#[orchestrator(name = "checkout")]
async fn checkout_swapped(ctx: Context, x: u64) -> u64 {
    let a = ctx.call(new_step, x).await.unwrap_or(0);
    ctx.sleep(std::time::Duration::from_millis(1)).await;
    ctx.call(old_step, a).await.unwrap_or(0)
}

/// A change that returns something else for the same history.
#[orchestrator(name = "checkout")]
async fn checkout_doubled(ctx: Context, x: u64) -> u64 {
    let a = ctx.call(old_step, x).await.unwrap_or(0);
    ctx.sleep(std::time::Duration::from_millis(1)).await;
    2 * ctx.call(new_step, a).await.unwrap_or(0)
}

const FIXTURE: &str = include_str!("fixtures/checkout.json");

#[test]
fn a_recorded_history_catches_an_incompatible_change_with_both_call_sites() {
    let fixture = HistoryExport::from_json(FIXTURE).expect("the fixture reads");
    assert_eq!(fixture.format, HistoryExport::FORMAT);
    let steps = || {
        durable::Runtime::builder()
            .activity(old_step)
            .activity(new_step)
    };
    steps()
        .orchestrator(checkout)
        .check_history(&fixture)
        .expect("the code that wrote it replays it");
    let bad = steps()
        .orchestrator(checkout_swapped)
        .check_history(&fixture)
        .unwrap_err();
    assert_eq!(bad.failure.kind, FailureKind::Nondeterminism);
    let msg = bad.failure.message;
    assert!(
        msg.contains("old_step") && msg.contains("new_step"),
        "{msg}"
    );
    assert!(
        msg.matches("evolution.rs:").count() >= 2,
        "both call sites: {msg}"
    );
    let bad = steps()
        .orchestrator(checkout_doubled)
        .check_history(&fixture)
        .unwrap_err();
    assert!(
        bad.failure.message.contains("returns 204"),
        "{}",
        bad.failure
    );
    // Another format is refused, never misread.
    let other = FIXTURE.replacen("\"format\": 1", "\"format\": 2", 1);
    assert!(HistoryExport::from_json(&other).is_err());
}

/// Writes the fixture again (run with `DURABLE_WRITE_FIXTURES=1` after a
/// deliberate change of the recorded code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_round_trips_and_checks_against_its_own_code() {
    let db = db();
    let rt = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(checkout)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client
        .start_with_id(checkout, "fixture-1", 1)
        .await
        .unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 102);
    let export = client.export_history(h.id()).await.unwrap();
    let json = export.to_json();
    assert_eq!(HistoryExport::from_json(&json).unwrap(), export);
    if std::env::var_os("DURABLE_WRITE_FIXTURES").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/checkout.json"),
            &json,
        )
        .unwrap();
    }
    builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(checkout)
        .check_history(&export)
        .unwrap();
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_check_lists_exactly_the_instances_that_would_break() {
    let db = db();
    let rt = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(before_patch)
        .orchestrator(flow_v1)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    // Waiting after the old step: break under `after_patch`.
    let mut breaking = Vec::new();
    for i in 0..3 {
        let h = client.start(before_patch, i).await.unwrap();
        waiting(&client, h.id()).await;
        breaking.push(h.id().to_owned());
    }
    // Finished: never replayed again, not listed.
    let done = client.start(before_patch, 9).await.unwrap();
    waiting(&client, done.id()).await;
    client.raise_event(done.id(), "go", ()).await.unwrap();
    within(done.result()).await.unwrap();
    // Version 1 of `flow` stays registered: fine.
    let fine = client.start(flow_v1, 5).await.unwrap();
    waiting(&client, fine.id()).await;
    rt.shutdown().await.unwrap();

    let next_build = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(after_patch)
        .orchestrator(flow_v1)
        .orchestrator(flow);
    let found = next_build.check_database().unwrap();
    let mut ids: Vec<_> = found.iter().map(|b| b.instance.clone()).collect();
    ids.sort();
    breaking.sort();
    assert_eq!(ids, breaking, "{found:#?}");
    assert!(found.iter().all(|b| b.orchestrator == "patchy"
        && b.status == Some(RuntimeStatus::Running)
        && b.failure.message.contains("old_step")));
    // The build that wrote them replays them all.
    let same = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(before_patch)
        .orchestrator(flow_v1);
    assert!(same.check_database().unwrap().is_empty());
}

/// A helper outside any orchestrator: the compile-time checker cannot see
/// the clock read in it.
fn stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[orchestrator]
async fn sneaky(ctx: Context) -> u64 {
    let at = stamp();
    ctx.call(old_step, at).await.unwrap_or(0)
}

/// The clock read in a side effect, and its value fed to a call: what
/// the rules ask for, and verify mode must accept it.
#[orchestrator]
async fn honest(ctx: Context, x: u64) -> u64 {
    let at = ctx.side_effect(stamp);
    let echoed = ctx.call(old_step, at).await.unwrap_or(0);
    let y = ctx.call(old_step, x).await.unwrap_or(0);
    ctx.sleep(std::time::Duration::from_millis(1)).await;
    y + u64::from(echoed == at + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_mode_catches_a_clock_read_hidden_in_a_helper_on_the_first_run() {
    let db = db();
    let rt = builder(&db)
        .activity(old_step)
        .orchestrator(sneaky)
        .orchestrator(honest)
        .verify_replay(true)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(sneaky, ()).await.unwrap();
    let status = until("the instance to be parked", || async {
        let s = client.status(h.id()).await.unwrap();
        (s.runtime_status == RuntimeStatus::Stuck).then_some(s)
    })
    .await;
    let failure = status.failure.expect("a diagnostic");
    assert_eq!(failure.kind, FailureKind::Nondeterminism);
    assert!(failure.message.contains("verify mode"), "{failure}");
    assert!(
        failure.message.contains("evolution.rs:"),
        "the call site: {failure}"
    );
    // Nothing of the bad turn was committed.
    assert!(client.history(h.id()).await.unwrap().is_empty());
    // Code that keeps to the rules (the clock read in a side effect) runs.
    let ok = client.start(honest, 1).await.unwrap();
    assert_eq!(within(ok.result()).await.unwrap(), 3);
    rt.shutdown().await.unwrap();
}

/// Fails after deciding things in its last turn.
#[orchestrator(name = "breaks")]
async fn breaks(ctx: Context, x: u64) -> u64 {
    let y = ctx.call(old_step, x).await.unwrap_or(0);
    // Decided in the turn that fails: a call sent off, a side effect.
    drop(ctx.call(new_step, y));
    let _ = ctx.side_effect(|| 7_u64);
    panic!("broken after {y}");
}

/// The same, but another call before the failure.
#[orchestrator(name = "breaks")]
async fn breaks_differently(ctx: Context, x: u64) -> u64 {
    let y = ctx.call(old_step, x).await.unwrap_or(0);
    drop(ctx.call(old_step, y));
    let _ = ctx.side_effect(|| 7_u64);
    panic!("broken after {y}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_history_checks_against_the_code_that_failed_it() {
    let db = db();
    let rt = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(breaks)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(breaks, 1).await.unwrap();
    let status = within(client.wait(h.id())).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Failed);
    let export = client.export_history(h.id()).await.unwrap();
    rt.shutdown().await.unwrap();
    let steps = || {
        durable::Runtime::builder()
            .activity(old_step)
            .activity(new_step)
    };
    steps().orchestrator(breaks).check_history(&export).unwrap();
    let bad = steps()
        .orchestrator(breaks_differently)
        .check_history(&export)
        .unwrap_err();
    assert!(bad.failure.message.contains("new_step"), "{}", bad.failure);
}

/// Two patches at one point; the first one's call is removed later.
#[orchestrator(name = "two_patches")]
async fn two_patches(ctx: Context, x: u64) -> u64 {
    let a = ctx.patched("a");
    let b = ctx.patched("b");
    let _: () = ctx.wait_event("go").await;
    if a && b {
        ctx.call(new_step, x).await.unwrap_or(0)
    } else {
        ctx.call(old_step, x).await.unwrap_or(0)
    }
}

#[orchestrator(name = "two_patches")]
async fn first_patch_removed(ctx: Context, x: u64) -> u64 {
    let b = ctx.patched("b");
    let _: () = ctx.wait_event("go").await;
    if b {
        ctx.call(new_step, x).await.unwrap_or(0)
    } else {
        ctx.call(old_step, x).await.unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_one_patch_keeps_the_next_on_its_path() {
    let db = db();
    let steps = || {
        builder(&db)
            .activity(old_step)
            .activity(new_step)
            .cache_size(0)
    };
    let rt = steps().orchestrator(two_patches).start().await.unwrap();
    let client = rt.client();
    let h = client.start(two_patches, 1).await.unwrap();
    until("both markers", || async {
        let n = client
            .history(h.id())
            .await
            .unwrap()
            .iter()
            .filter(|r| matches!(r.event, Event::Patched { .. }))
            .count();
        (n == 2).then_some(())
    })
    .await;
    rt.shutdown().await.unwrap();
    let rt = steps()
        .orchestrator(first_patch_removed)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client.raise_event(h.id(), "go", ()).await.unwrap();
    let h = client.handle(first_patch_removed, h.id());
    assert_eq!(within(h.result()).await.unwrap(), 101, "the new path");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_check_sees_instances_not_started_and_refuses_a_missing_file() {
    let db = db();
    let rt = builder(&db)
        .activity(old_step)
        .orchestrator(before_patch)
        .start()
        .await
        .unwrap();
    let options = durable::StartOptions::new()
        .id("later")
        .at(std::time::SystemTime::now() + std::time::Duration::from_secs(3_600));
    rt.client()
        .start_with(before_patch, 1, options)
        .await
        .unwrap();
    rt.shutdown().await.unwrap();
    // A build where `patchy` was renamed away.
    let found = builder(&db).orchestrator(flow).check_database().unwrap();
    assert_eq!(
        found
            .iter()
            .map(|b| b.instance.as_str())
            .collect::<Vec<_>>(),
        ["later"]
    );
    assert!(
        found[0].failure.message.contains("renamed"),
        "{}",
        found[0].failure
    );
    let missing = durable::Runtime::builder()
        .sqlite(db.dir.path().join("typo.db"))
        .check_database()
        .unwrap_err();
    assert!(
        matches!(missing, durable::Error::InvalidSetting { .. }),
        "{missing}"
    );
    assert!(!db.dir.path().join("typo.db").exists(), "nothing created");
}

/// Starts version 1 of `flow` as a child.
#[orchestrator]
async fn parent_of_v1(ctx: Context, x: u64) -> String {
    ctx.call_child(flow_v1, x).await.unwrap_or_default()
}

#[tokio::test]
async fn a_child_of_a_version_not_registered_is_refused_at_start() {
    let db = db();
    let err = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(flow)
        .orchestrator(parent_of_v1)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, durable::Error::UnregisteredChild { child, .. } if child.contains("version 1")),
        "{err}"
    );
}

/// Before a patch that branches at two places.
#[orchestrator(name = "two_sites")]
async fn two_sites_before(ctx: Context, x: u64) -> u64 {
    let y = ctx.call(old_step, x).await.unwrap_or(0);
    let _: () = ctx.wait_event("go").await;
    ctx.call(old_step, y).await.unwrap_or(0)
}

/// One patch id asked at two call sites, the second one reached only after
/// an old instance's history ends.
#[orchestrator(name = "two_sites")]
async fn two_sites_patched(ctx: Context, x: u64) -> u64 {
    let y = if ctx.patched("steps") {
        ctx.call(new_step, x).await.unwrap_or(0)
    } else {
        ctx.call(old_step, x).await.unwrap_or(0)
    };
    let _: () = ctx.wait_event("go").await;
    if ctx.patched("steps") {
        ctx.call(new_step, y).await.unwrap_or(0)
    } else {
        ctx.call(old_step, y).await.unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_patch_id_at_two_call_sites_takes_one_path_per_instance() {
    let db = db();
    let steps = || {
        builder(&db)
            .activity(old_step)
            .activity(new_step)
            .cache_size(0)
    };
    let rt = steps()
        .orchestrator(two_sites_before)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let old = client.start(two_sites_before, 1).await.unwrap();
    waiting(&client, old.id()).await;
    rt.shutdown().await.unwrap();

    let rt = steps()
        .orchestrator(two_sites_patched)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let new = client.start(two_sites_patched, 1).await.unwrap();
    waiting(&client, new.id()).await;
    client.raise_event(old.id(), "go", ()).await.unwrap();
    client.raise_event(new.id(), "go", ()).await.unwrap();
    let old = client.handle(two_sites_patched, old.id());
    let new = client.handle(two_sites_patched, new.id());
    assert_eq!(within(old.result()).await.unwrap(), 3, "the old path twice");
    assert_eq!(
        within(new.result()).await.unwrap(),
        201,
        "the new path twice"
    );
    for (id, markers) in [(old.id(), 0), (new.id(), 1)] {
        let history = client.history(id).await.unwrap();
        let found = history
            .iter()
            .filter(|r| matches!(r.event, Event::Patched { .. }))
            .count();
        assert_eq!(found, markers, "markers in {id}");
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_check_sees_the_version_of_a_start_still_to_come() {
    let db = db();
    let rt = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(flow_v1)
        .orchestrator(flow)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let later = || std::time::SystemTime::now() + std::time::Duration::from_secs(3_600);
    let options = |id: &str| durable::StartOptions::new().id(id).at(later());
    client
        .start_with(flow_v1, 1, options("later-v1"))
        .await
        .unwrap();
    client
        .start_with(flow, 1, options("later-v2"))
        .await
        .unwrap();
    rt.shutdown().await.unwrap();
    // A build where version 1 is gone.
    let found = builder(&db)
        .activity(new_step)
        .orchestrator(flow)
        .check_database()
        .unwrap();
    assert_eq!(
        found
            .iter()
            .map(|b| b.instance.as_str())
            .collect::<Vec<_>>(),
        ["later-v1"]
    );
    assert_eq!(found[0].failure.kind, FailureKind::UnregisteredOrchestrator);
    assert!(
        found[0].failure.message.contains("version 1"),
        "{}",
        found[0].failure
    );
}

#[test]
fn the_database_check_refuses_an_empty_file_and_leaves_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let err = durable::Runtime::builder()
        .sqlite(&path)
        .orchestrator(flow)
        .check_database()
        .unwrap_err();
    assert!(
        matches!(&err, durable::Error::InvalidSetting { reason, .. } if reason.contains("no durable database")),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "nothing written"
    );
}

#[test]
fn an_export_with_no_events_checks_nothing_and_is_refused() {
    // What an export taken before the instance's first turn holds.
    let empty = HistoryExport::new("not-run-yet", Vec::new());
    let err = durable::Runtime::builder()
        .activity(old_step)
        .activity(new_step)
        .orchestrator(checkout)
        .check_history(&empty)
        .unwrap_err();
    assert_eq!(err.failure.kind, FailureKind::Corrupt);
    assert!(err.failure.message.contains("no events"), "{}", err.failure);
}

/// Calls version 1 of `flow` as a child.
#[orchestrator(name = "parent_of_flow")]
async fn parent_calls_v1(ctx: Context, x: u64) -> String {
    ctx.call_child(flow_v1, x).await.unwrap_or_default()
}

/// The same parent, its child call moved to version 2 in place.
#[orchestrator(name = "parent_of_flow")]
async fn parent_calls_v2(ctx: Context, x: u64) -> String {
    ctx.call_child(flow, x).await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_call_moved_to_another_version_is_a_difference() {
    let db = db();
    let steps = || {
        builder(&db)
            .activity(old_step)
            .activity(new_step)
            .orchestrator(flow_v1)
            .orchestrator(flow)
            .cache_size(0)
    };
    let rt = steps().orchestrator(parent_calls_v1).start().await.unwrap();
    let client = rt.client();
    let parent = client.start(parent_calls_v1, 1).await.unwrap();
    let child = until("the child to be called", || async {
        let h = client.history(parent.id()).await.unwrap();
        h.iter().find_map(|r| match &r.event {
            Event::ChildScheduled { id, version, .. } => Some((id.clone(), *version)),
            _ => None,
        })
    })
    .await;
    assert_eq!(child.1, 1, "the child's version is recorded");
    waiting(&client, &child.0).await;
    let export = client.export_history(parent.id()).await.unwrap();
    rt.shutdown().await.unwrap();

    let bad = steps()
        .orchestrator(parent_calls_v2)
        .check_history(&export)
        .unwrap_err();
    assert_eq!(bad.failure.kind, FailureKind::Nondeterminism);
    let message = &bad.failure.message;
    assert!(
        message.contains("version 1") && message.contains("version 2"),
        "{message}"
    );
    assert_eq!(
        message.matches("evolution.rs").count(),
        2,
        "both call sites: {message}"
    );
    steps()
        .orchestrator(parent_calls_v1)
        .check_history(&export)
        .unwrap();
    let found = steps()
        .orchestrator(parent_calls_v2)
        .check_database()
        .unwrap();
    assert_eq!(
        found
            .iter()
            .map(|b| b.instance.as_str())
            .collect::<Vec<_>>(),
        [parent.id()],
        "the parent, not its child"
    );

    // Deployed anyway: the parent is parked when it replays, not failed.
    let rt = steps().orchestrator(parent_calls_v2).start().await.unwrap();
    let client = rt.client();
    client.raise_event(&child.0, "go", ()).await.unwrap();
    let status = until("the parent to be parked", || async {
        let s = client.status(parent.id()).await.unwrap();
        (s.runtime_status == RuntimeStatus::Stuck).then_some(s)
    })
    .await;
    let failure = status.failure.expect("a diagnostic");
    assert_eq!(failure.kind, FailureKind::Nondeterminism, "{failure}");
    rt.shutdown().await.unwrap();
}

#[test]
fn a_child_call_recorded_before_versions_reads_as_version_one() {
    let old = r#"{"ChildScheduled":{"seq":0,"name":"c","id":"p:0","input":1,"site":"here"}}"#;
    let event: Event = serde_json::from_str(old).unwrap();
    assert!(
        matches!(event, Event::ChildScheduled { version: 1, .. }),
        "{event:?}"
    );
    assert_eq!(
        serde_json::to_string(&event).unwrap(),
        old,
        "written as before"
    );
}

/// Continues as new with an input read from the clock in a helper.
#[orchestrator]
async fn sneaky_restart(ctx: Context, round: u64) -> u64 {
    if round > 0 {
        return round;
    }
    ctx.continue_as_new(stamp().max(1)).await
}

/// Continues as new with inputs that follow from history.
#[orchestrator]
async fn counts_down(ctx: Context, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let _ = ctx.call(old_step, n).await;
    ctx.continue_as_new(n - 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_mode_checks_the_input_a_turn_continues_as_new_with() {
    let db = db();
    let rt = builder(&db)
        .activity(old_step)
        .orchestrator(sneaky_restart)
        .orchestrator(counts_down)
        .verify_replay(true)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(sneaky_restart, 0).await.unwrap();
    let status = until("the instance to be parked", || async {
        let s = client.status(h.id()).await.unwrap();
        (s.runtime_status == RuntimeStatus::Stuck).then_some(s)
    })
    .await;
    let failure = status.failure.expect("a diagnostic");
    assert_eq!(failure.kind, FailureKind::Nondeterminism);
    assert!(failure.message.contains("verify mode"), "{failure}");
    assert!(failure.message.contains("Started"), "{failure}");
    // The restart was not committed: the first execution never began again.
    assert!(client.history(h.id()).await.unwrap().is_empty());
    // Restarts that follow from history pass the check.
    let ok = client.start(counts_down, 3).await.unwrap();
    assert_eq!(within(ok.result()).await.unwrap(), 0);
    rt.shutdown().await.unwrap();
}

/// A rolling deploy: processes of the old build (version 1) and of the new
/// one (versions 1 and 2) share the database. The old build never takes a
/// version 2 instance (it would park it); the new one runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rolling_deploy_the_old_build_leaves_new_versions_alone() {
    let db = db();
    let old_build = builder(&db)
        .activity(old_step)
        .orchestrator(flow_v1)
        .start()
        .await
        .unwrap();
    // A process of the new build starts a version 2 instance (what its
    // client writes: the instance and its `Started`), and is gone before
    // running it: only the old build's process runs for now.
    let store = common::store(&db);
    let starts: Vec<_> = ["v2", "v2-dropped"]
        .into_iter()
        .map(|id| {
            let mut start = durable::store::NewInstance::new(
                id,
                "flow",
                serde_json::from_str("5").unwrap(),
                store.now().unwrap(),
            );
            start.version = 2;
            start
        })
        .collect();
    store.create_instances(&starts).unwrap();
    let new_build = || {
        builder(&db)
            .activity(old_step)
            .activity(new_step)
            .orchestrator(flow_v1)
            .orchestrator(flow)
    };
    // The old build works on: a version 1 instance started after it runs
    // to its end, so its fetches have passed over the version 2 one.
    let client = old_build.client();
    let v1 = client.start(flow_v1, 1).await.unwrap();
    waiting(&client, v1.id()).await;
    client.raise_event(v1.id(), "go", ()).await.unwrap();
    assert_eq!(within(v1.result()).await.unwrap(), "v1:2");
    let s = client.status("v2").await.unwrap();
    assert_eq!(s.runtime_status, RuntimeStatus::Pending, "{s:?}");
    assert!(client.history("v2").await.unwrap().is_empty());
    // It says why it waits.
    let waits = client.waiting_on("v2").await.unwrap();
    assert!(
        matches!(
            &waits[0],
            durable::Blocker::NewerVersion { orchestrator, version: 2, newest: 1 }
                if orchestrator == "flow"
        ),
        "{waits:?}"
    );
    assert!(waits[0].to_string().contains("newer"), "{}", waits[0]);
    // A termination still ends one (a rollback's way out): without code.
    client.terminate("v2-dropped", "rolled back").await.unwrap();
    let ended = within(client.wait("v2-dropped")).await.unwrap();
    assert_eq!(ended.runtime_status, RuntimeStatus::Terminated, "{ended:?}");
    // The new build's process takes it.
    let rt = new_build().start().await.unwrap();
    let client = rt.client();
    client.raise_event("v2", "go", ()).await.unwrap();
    let v2 = client.handle(flow, "v2");
    assert_eq!(within(v2.result()).await.unwrap(), "v2:105");
    rt.shutdown().await.unwrap();
    old_build.shutdown().await.unwrap();
}

/// A database written before instances had a version column (SQLite
/// schema 4, PostgreSQL schema 1) is brought up to date when opened: the
/// version of each instance is read from its `Started`, and nothing is
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_schema_before_is_migrated_in_place() {
    let db = db();
    let rt = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(flow_v1)
        .orchestrator(flow)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let v1 = client.start(flow_v1, 1).await.unwrap();
    let v2 = client.start(flow, 2).await.unwrap();
    waiting(&client, v1.id()).await;
    waiting(&client, v2.id()).await;
    rt.shutdown().await.unwrap();
    // What the release before wrote: no version, no last error.
    common::execute(&db, "ALTER TABLE instances DROP COLUMN version", &[]);
    common::execute(&db, "ALTER TABLE tasks DROP COLUMN last_error", &[]);
    let get = if common::on_postgres() {
        common::execute(
            &db,
            "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
            &[],
        );
        "SELECT value::bigint FROM meta WHERE key = 'schema_version'"
    } else {
        common::execute(&db, "PRAGMA user_version = 4", &[]);
        "PRAGMA user_version"
    };
    // The check before a deploy reads it as it is: nothing migrated under
    // the workers of the release before.
    let check = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(flow_v1)
        .orchestrator(flow)
        .check_database()
        .unwrap();
    assert!(check.is_empty(), "{check:?}");
    assert_eq!(
        common::number(&db, get, &[]),
        if common::on_postgres() { 1 } else { 4 },
        "the check changed nothing"
    );
    let old_build = builder(&db)
        .activity(old_step)
        .orchestrator(flow_v1)
        .start()
        .await
        .unwrap();
    assert_eq!(
        common::number(&db, get, &[]),
        if common::on_postgres() { 2 } else { 5 }
    );
    let version =
        |id: &str| common::number(&db, "SELECT version FROM instances WHERE id = ?1", &[id]);
    assert_eq!((version(v1.id()), version(v2.id())), (1, 2));
    // The version 1 build finishes its own instance and leaves the other.
    let client = old_build.client();
    client.raise_event(v1.id(), "go", ()).await.unwrap();
    client.raise_event(v2.id(), "go", ()).await.unwrap();
    let v1 = client.handle(flow_v1, v1.id());
    assert_eq!(within(v1.result()).await.unwrap(), "v1:2");
    old_build.shutdown().await.unwrap();
    let rt = builder(&db)
        .activity(old_step)
        .activity(new_step)
        .orchestrator(flow_v1)
        .orchestrator(flow)
        .start()
        .await
        .unwrap();
    let v2 = rt.client().handle(flow, v2.id());
    assert_eq!(within(v2.result()).await.unwrap(), "v2:102");
    rt.shutdown().await.unwrap();
}

/// A child of a version this build does not have, terminated before it
/// ever ran, still tells its parent how it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_terminated_before_its_first_turn_tells_its_parent() {
    let db = db();
    let store = common::store(&db);
    let now = store.now().unwrap();
    // The parent runs elsewhere (a name this build does not have), so
    // what is sent to it stays queued for the test to read.
    let parent = durable::store::NewInstance::new(
        "parent",
        "elsewhere",
        serde_json::from_str("0").unwrap(),
        now,
    );
    let mut child =
        durable::store::NewInstance::new("child", "flow", serde_json::from_str("1").unwrap(), now);
    child.version = 2;
    child.parent = Some(durable::history::ParentRef {
        id: "parent".to_owned(),
        seq: 0,
    });
    store.create_instances(&[parent, child]).unwrap();
    let rt = builder(&db)
        .activity(old_step)
        .orchestrator(flow_v1)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client.terminate("child", "rolled back").await.unwrap();
    let ended = within(client.wait("child")).await.unwrap();
    assert_eq!(ended.runtime_status, RuntimeStatus::Terminated, "{ended:?}");
    let queued = store.queued(&["parent".to_owned()]).unwrap();
    let told = queued
        .iter()
        .flat_map(|(_, m)| m.iter())
        .any(|(_, e)| matches!(e, Event::ChildFailed { seq: 0, .. }));
    assert!(told, "the parent was told: {queued:?}");
    rt.shutdown().await.unwrap();
}
