//! Claims on one PostgreSQL schema by competing processes, through the
//! store's interface alone (`src/bin/claimer.rs`): four claimers over two
//! hundred rounds each never hold an instance or a call at once and never
//! come back short while work they could take was ready; and a holder
//! frozen past its lock has its late commit refused once another process
//! took the instance over.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use durable::history::Payload;
use durable::store::{NewInstance, PostgresOptions, PostgresStore, Store};
use durable_reliability::claims::{check_claims, read_log, turns_in, Entry, INSTANCE_NAME};
use durable_reliability::pg::{self, SchemaGuard};
use durable_reliability::procs::{finish, signal, until, Reaper, PATIENCE};

const CLAIMERS: usize = 4;
const ROUNDS: u64 = 200;
/// Instances in play: fewer than the claimers could hold at once (each
/// holds up to two instances and two calls), so fetches often come back
/// short, and the check that none did while work was ready has cases both
/// ways (at 6 work was hardly ever ready for long, at 8 hardly ever short).
const INSTANCES: usize = 7;

fn open(url: &str, schema: &str) -> PostgresStore {
    let mut options = PostgresOptions::default();
    options.schema = schema.to_owned();
    options.listen = false;
    options.pool_size = 2;
    PostgresStore::connect_with(url, &options)
        .unwrap_or_else(|e| panic!("PostgreSQL at `{url}`: {e}"))
}

/// Creates instances `ids`, each with its `Started` message due at once;
/// returns the server's time once they are.
fn seed(store: &PostgresStore, ids: &[String]) -> i64 {
    let input: Payload = serde_json::from_str("0").expect("valid JSON");
    let now = store.now().expect("the server's clock");
    let new: Vec<NewInstance> = ids
        .iter()
        .map(|id| NewInstance::new(id.clone(), INSTANCE_NAME, input.clone(), now))
        .collect();
    store.create_instances(&new).expect("instances are created");
    store.now().expect("the server's clock")
}

fn claimer(url: &str, schema: &str, log: &Path, mode: &str, n: u64, go: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_claimer"))
        .arg(url)
        .arg(schema)
        .arg(log)
        .arg(mode)
        .arg(n.to_string())
        .arg(go)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the claimer starts")
}

/// Waits until `n` claimers have connected (each leaves a mark by `go`).
fn wait_ready(go: &Path, n: usize) {
    let dir = go.parent().expect("a directory");
    let prefix = format!(
        "{}.ready.",
        go.file_name().and_then(|f| f.to_str()).expect("a name")
    );
    until("the claimers to connect", || {
        let ready = std::fs::read_dir(dir)
            .expect("the directory reads")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            })
            .count();
        (ready >= n).then_some(())
    });
}

#[test]
fn four_claimers_never_hold_work_at_once_nor_idle_while_it_is_ready() {
    let url = pg::url();
    let schema = SchemaGuard::new(&url, "claims");
    let store = open(&url, &schema.schema);
    let dir = tempfile::tempdir().expect("a temp dir");
    let log = dir.path().join("claims.log");
    let go = dir.path().join("go");
    let ids: Vec<String> = (0..INSTANCES).map(|i| format!("c{i}")).collect();
    let mut claimers = Reaper::default();
    for _ in 0..CLAIMERS {
        claimers
            .0
            .push(claimer(&url, &schema.schema, &log, "compete", ROUNDS, &go));
    }
    wait_ready(&go, CLAIMERS);
    let seeded_at = seed(&store, &ids);
    std::fs::write(&go, "").expect("the go file");
    for child in &mut claimers.0 {
        finish(child, 2 * PATIENCE);
    }

    let entries = read_log(&log).expect("the claim log reads");
    let histories: BTreeMap<String, Vec<(u32, u64)>> = ids
        .iter()
        .map(|id| {
            let history = store
                .history(id)
                .expect("the history reads")
                .unwrap_or_default();
            (id.clone(), turns_in(&history))
        })
        .collect();
    let report = check_claims(&entries, &ids, seeded_at, &histories);
    println!(
        "{} claims and {} leases by {CLAIMERS} claimers in {ROUNDS} rounds each: {} fetches, \
         {} short ({} empty), {} with work ready throughout (the idle check's cases), {} short \
         while work was ready",
        report.claims,
        report.leases,
        report.fetches,
        report.short,
        report.empty,
        report.tested,
        report.idle_while_ready
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    let rounds = entries
        .iter()
        .filter(|e| matches!(e, Entry::Tasks { .. }))
        .count();
    assert_eq!(
        rounds,
        CLAIMERS * ROUNDS as usize,
        "every claimer ran every round"
    );
    // The checks had work to do: claims changed hands, and fetches ran
    // while work was ready (each of which had to come back full).
    assert!(
        report.claims > INSTANCES * 4,
        "few claims: {}",
        report.claims
    );
    assert!(
        report.tested > 10,
        "few fetches met ready work: {}",
        report.tested
    );
    assert!(
        report.short > 20,
        "few fetches came back short: {}",
        report.short
    );
}

#[test]
fn a_holder_frozen_past_its_lock_has_its_late_commit_refused() {
    let url = pg::url();
    let schema = SchemaGuard::new(&url, "fence");
    let store = open(&url, &schema.schema);
    let dir = tempfile::tempdir().expect("a temp dir");
    let log = dir.path().join("claims.log");
    let (go_a, go_b) = (dir.path().join("go-a"), dir.path().join("go-b"));
    let id = "fenced".to_owned();
    seed(&store, std::slice::from_ref(&id));
    let held = |who: u32| {
        read_log(&log)
            .expect("the claim log reads")
            .iter()
            .any(|e| matches!(e, Entry::Held { who: w, .. } if *w == who))
    };
    let late = |who: u32| {
        read_log(&log)
            .expect("the claim log reads")
            .into_iter()
            .find_map(|e| match e {
                Entry::Late {
                    who: w, committed, ..
                } if w == who => Some(committed),
                _ => None,
            })
    };
    let mut holders = Reaper::default();
    // A claims the instance for 300 ms and freezes (between store calls:
    // it waits for its go file, in no transaction).
    holders
        .0
        .push(claimer(&url, &schema.schema, &log, "hold", 300, &go_a));
    let a = holders.0[0].id();
    until("A to claim the instance", || held(a).then_some(()));
    signal(a, "STOP");
    // B claims it once A's lock lapses on the server's clock, and commits.
    holders
        .0
        .push(claimer(&url, &schema.schema, &log, "hold", 60_000, &go_b));
    let b = holders.0[1].id();
    until("B to take the instance over", || held(b).then_some(()));
    std::fs::write(&go_b, "").expect("the go file");
    let b_committed = until("B to commit", || late(b));
    assert!(b_committed, "B's commit, holding the lock, was refused");
    // A thaws and commits the turn it computed before it froze.
    std::fs::write(&go_a, "").expect("the go file");
    signal(a, "CONT");
    let a_committed = until("A to commit", || late(a));
    for child in &mut holders.0 {
        finish(child, PATIENCE);
    }
    assert!(!a_committed, "A's late commit was written over B's turn");
    let history = store
        .history(&id)
        .expect("the history reads")
        .unwrap_or_default();
    assert_eq!(
        turns_in(&history),
        vec![(b, 0)],
        "only B's turn is in history"
    );
    assert_eq!(history.len(), 2, "Started and B's call, once: {history:?}");
    let waited = Duration::from_millis(300);
    println!("A ({a}) froze holding the instance; B ({b}) took it after {waited:?} and committed; A's late commit was refused");
}
