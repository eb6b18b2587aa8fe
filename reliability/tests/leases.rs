//! A worker that stalls past its lease loses it: another takes the work,
//! and the stalled worker's late commit is refused, with no duplicate events.
//! Driven through the store with explicit times, so "stalling" is exact.

use durable::history::{Event, HistoryRecord};
use durable::store::{
    CommitOutcome, NewInstance, NewTask, SqliteStore, StatusUpdate, Store, TaskOutcome, TaskResult,
    TurnCommit,
};
use durable::{RetryPolicy, RuntimeStatus};

fn payload(json: &str) -> durable::history::Payload {
    serde_json::from_str(json).expect("valid JSON")
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(dir.path().join("leases.db")).expect("opens");
    (dir, store)
}

/// Creates instance `i` of orchestrator `o`.
fn create(store: &SqliteStore) {
    store
        .create_instance(&NewInstance {
            id: "i".to_owned(),
            name: "o".to_owned(),
            input: payload("1"),
            now: 0,
        })
        .unwrap();
}

/// The first turn of instance `i`: Started, then one activity call.
fn first_turn(consumed: Vec<i64>, by: &str) -> TurnCommit {
    let events = vec![
        Event::Started {
            name: "o".to_owned(),
            input: payload("1"),
        },
        Event::ActivityScheduled {
            seq: 0,
            name: "a".to_owned(),
            input: payload("1"),
            site: by.to_owned(),
        },
    ];
    TurnCommit {
        instance: "i".to_owned(),
        expected_len: 0,
        events: events
            .into_iter()
            .enumerate()
            .map(|(n, event)| HistoryRecord {
                index: n as u64,
                turn: 0,
                at: 0,
                event,
            })
            .collect(),
        consumed,
        tasks: vec![NewTask {
            seq: 0,
            name: "a".to_owned(),
            input: payload("1"),
            retry: RetryPolicy::default(),
        }],
        messages: Vec::new(),
        finished_tasks: Vec::new(),
        lease_tasks_until: None,
        status: Some(StatusUpdate {
            status: RuntimeStatus::Running,
            output: None,
            failure: None,
            reason: None,
            now: 0,
        }),
    }
}

#[test]
fn a_turn_taken_over_after_a_stall_commits_once_and_the_late_commit_is_refused() {
    let (_dir, store) = store();
    create(&store);
    // A takes the instance's turn, locked until t=100, then stalls.
    let a = store.fetch_work("A", 10, 100, 10).unwrap();
    assert_eq!(a.len(), 1);
    // While A's lock holds, B gets nothing.
    assert!(store.fetch_work("B", 50, 150, 10).unwrap().is_empty());
    // After it, B takes the same messages and commits the turn.
    let b = store.fetch_work("B", 101, 200, 10).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].messages, a[0].messages);
    let ids: Vec<i64> = b[0].messages.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        store
            .commit_turns("B", &[first_turn(ids.clone(), "B")])
            .unwrap(),
        vec![CommitOutcome::Committed { tasks: vec![1] }]
    );
    // A wakes up and commits the turn it computed: refused.
    assert_eq!(
        store.commit_turns("A", &[first_turn(ids, "A")]).unwrap(),
        vec![CommitOutcome::Conflict]
    );
    let history = store.history("i").unwrap();
    assert_eq!(history.len(), 2, "the turn is recorded once: {history:?}");
    assert!(matches!(&history[1].event, Event::ActivityScheduled { site, .. } if site == "B"));
    // One task, not two.
    assert_eq!(store.fetch_tasks("C", 1_000, 2_000, 10).unwrap().len(), 1);
}

#[test]
fn an_activity_taken_over_after_a_stall_completes_once_and_the_late_result_is_dropped() {
    let (_dir, store) = store();
    create(&store);
    let work = store.fetch_work("A", 0, 100, 10).unwrap();
    let ids = work[0].messages.iter().map(|(id, _)| *id).collect();
    store.commit_turns("A", &[first_turn(ids, "A")]).unwrap();

    // Worker A leases the attempt until t=100 and stalls.
    let a = store.fetch_tasks("A", 0, 100, 10).unwrap();
    assert_eq!((a.len(), a[0].attempt), (1, 1));
    assert!(store.fetch_tasks("B", 50, 150, 10).unwrap().is_empty());
    // B takes it over after the lease and finishes it.
    let b = store.fetch_tasks("B", 101, 200, 10).unwrap();
    assert_eq!((b.len(), b[0].attempt), (1, 2));
    let done = |attempt, by: &str| TaskResult {
        id: b[0].id,
        attempt,
        instance: "i".to_owned(),
        outcome: TaskOutcome::Done(Event::ActivityCompleted {
            seq: 0,
            output: payload(&format!("\"{by}\"")),
        }),
    };
    store.finish_tasks("B", &[done(2, "B")]).unwrap();
    // A's late result is dropped: its lease is gone.
    store.finish_tasks("A", &[done(1, "A")]).unwrap();
    let work = store.fetch_work("C", 1_000, 2_000, 10).unwrap();
    let completions: Vec<_> = work[0]
        .messages
        .iter()
        .filter(|(_, e)| matches!(e, Event::ActivityCompleted { .. }))
        .collect();
    assert_eq!(completions.len(), 1, "{completions:?}");
    assert!(
        matches!(&completions[0].1, Event::ActivityCompleted { output, .. } if output.json() == "\"B\"")
    );
}
