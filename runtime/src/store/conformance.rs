//! The store conformance suite: the contract of every [`Store`] method,
//! stated as tests that any backend runs unchanged.
//!
//! Each check takes a fresh, empty store. A backend's test file runs them
//! all with one line:
//!
//! ```no_run
//! durable::store_conformance_tests!(|| {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = durable::store::SqliteStore::open(dir.path().join("c.db")).unwrap();
//!     (dir, store)
//! });
//! ```
//!
//! The closure returns a guard kept alive for the test (a temp dir, a
//! schema to drop) and the store. Checks that need time to pass wait on
//! the store's own clock ([`Store::now`]), never on a guess.

use std::time::Duration;

use super::{
    Backlog, CommitOutcome, Created, Enqueued, ListQuery, Names, NewInstance, NewMessage, NewTask,
    Outgoing, Restart, StatusUpdate, Store, TaskOutcome, TaskRef, TaskResult, Transition,
    TurnCommit,
};
use crate::history::{
    ActivityFailure, ChildFailure, Event, Failure, FailureKind, HistoryRecord, ParentRef, Payload,
    RuntimeStatus,
};
use crate::retry::RetryPolicy;

const O: &str = "orch";
const A: &str = "act";
const OWNER: &str = "owner-a";
const OTHER: &str = "owner-b";
/// A lock or lease no check outlives.
const LONG: Duration = Duration::from_secs(3600);
/// A lock or lease a check waits out (on the store's clock).
const SHORT: Duration = Duration::from_millis(150);
const ORCH: Names<'static> = Names(&[(O, Names::ANY_VERSION)]);
const ACTS: Names<'static> = Names(&[(A, Names::ANY_VERSION)]);

fn payload(json: &str) -> Payload {
    serde_json::from_str(json).expect("invariant: the suite's JSON is valid")
}

fn ok<T>(r: Result<T, super::StoreError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

fn create(s: &dyn Store, id: &str) {
    let created = ok(
        s.create_instances(&[NewInstance::new(id, O, payload("1"), 0)]),
        "create_instances",
    );
    assert_eq!(created, vec![Created::Created { message: 0 }]);
}

fn event(name: &str, data: &str) -> Event {
    Event::EventRaised {
        name: name.to_owned(),
        data: payload(data),
    }
}

fn record(index: u64, turn: u64, event: Event) -> HistoryRecord {
    HistoryRecord {
        index,
        turn,
        at: 0,
        event,
    }
}

/// A running turn of `id` on `len` events that records one event per
/// consumed message.
fn turn(id: &str, len: u64, consumed: &[u64]) -> TurnCommit {
    let mut t = TurnCommit::new(id, len);
    t.events = consumed
        .iter()
        .enumerate()
        .map(|(i, _)| record(len + i as u64, len, event("e", "0")))
        .collect();
    t.consumed = consumed.to_vec();
    t.status = Some(StatusUpdate::new(RuntimeStatus::Running, 0));
    t
}

/// Waits until the store's clock has passed `d` from now.
fn wait_out(s: &dyn Store, d: Duration) {
    let start = ok(s.now(), "now");
    let until = start.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    while ok(s.now(), "now") <= until {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Creates `id` and commits its first turn, which calls one activity,
/// leased to `OWNER`; returns the call's task id.
fn started_with_a_leased_call(s: &dyn Store, id: &str) -> i64 {
    create(s, id);
    let mut t = turn(id, 0, &[0]);
    t.tasks = vec![NewTask::new(0, A, payload("1"), RetryPolicy::default())];
    t.lease_tasks = 1;
    match &ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns")[..] {
        [CommitOutcome::Committed { tasks }] => tasks[0],
        other => panic!("not committed: {other:?}"),
    }
}

/// The turn that delivers `task`'s result straight from the worker.
fn completion_turn(id: &str, task: i64) -> TurnCommit {
    let mut done = TurnCommit::new(id, 1);
    done.finished_tasks = vec![TaskRef {
        id: task,
        attempt: 1,
    }];
    done.events = vec![record(
        1,
        1,
        Event::ActivityCompleted {
            seq: 0,
            output: payload("2"),
        },
    )];
    done
}

fn seqs(s: &dyn Store, owner: &str, id: &str) -> Vec<u64> {
    ok(s.fetch_work(owner, LONG, 100, ORCH), "fetch_work")
        .into_iter()
        .find(|w| w.id == id)
        .map(|w| w.messages.iter().map(|(m, _)| *m).collect())
        .unwrap_or_default()
}

/// An instance is created once with its `Started` message; an id that
/// exists is left untouched; unknown ids have no status, history or progress.
pub fn creates_instances_once(s: &dyn Store) {
    create(s, "a");
    let again = ok(
        s.create_instances(&[
            NewInstance::new("a", O, payload("2"), 0),
            NewInstance::new("b", O, payload("3"), 0),
        ]),
        "create_instances",
    );
    assert_eq!(
        again,
        vec![Created::Exists, Created::Created { message: 0 }]
    );
    let status = ok(s.status("a"), "status").expect("a exists");
    assert_eq!(status.runtime_status, RuntimeStatus::Pending);
    assert_eq!(status.name, O);
    assert_eq!(ok(s.history("a"), "history"), Some(Vec::new()));
    assert_eq!(ok(s.status("nope"), "status"), None);
    assert_eq!(ok(s.history("nope"), "history"), None);
    assert!(ok(s.progress(OWNER, &["nope".to_owned()]), "progress").is_empty());
    let work = ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    let a = work.iter().find(|w| w.id == "a").expect("a has work");
    assert_eq!(
        a.messages,
        vec![(
            0,
            Event::Started {
                name: O.to_owned(),
                input: payload("1"),
                seed: None,
                first_seq: 0,
                parent: None,
                version: 1,
            }
        )],
        "the first input stands"
    );
}

/// Messages get increasing per-instance sequence numbers and are handed
/// out in that order; a keyed message is queued once; unknown and finished
/// instances take none.
pub fn enqueues_in_sequence_and_once_per_key(s: &dyn Store) {
    assert_eq!(
        ok(s.enqueue("nope", &event("e", "1"), None, false), "enqueue"),
        Enqueued::NotFound
    );
    create(s, "a");
    let mut got = Vec::new();
    for i in 0..3 {
        got.push(ok(
            s.enqueue("a", &event("e", &i.to_string()), None, false),
            "enqueue",
        ));
    }
    assert_eq!(
        got,
        (1..=3)
            .map(|m| Enqueued::Queued { message: Some(m) })
            .collect::<Vec<_>>()
    );
    let keyed = ok(
        s.enqueue("a", &event("k", "1"), Some("key"), false),
        "enqueue",
    );
    assert_eq!(keyed, Enqueued::Queued { message: Some(4) });
    let again = ok(
        s.enqueue("a", &event("k", "2"), Some("key"), false),
        "enqueue",
    );
    assert_eq!(again, Enqueued::Queued { message: None });
    assert_eq!(seqs(s, OWNER, "a"), vec![0, 1, 2, 3, 4]);
    // Finish it: it takes nothing more.
    let mut end = turn("a", 0, &[0, 1, 2, 3, 4]);
    end.status = Some(StatusUpdate::new(RuntimeStatus::Completed, 0));
    end.discard_queued = true;
    end.take_all_due = true;
    assert!(matches!(
        ok(s.commit_turns(OWNER, LONG, &[end]), "commit_turns")[..],
        [CommitOutcome::Committed { .. }]
    ));
    assert_eq!(
        ok(s.enqueue("a", &event("e", "9"), None, false), "enqueue"),
        Enqueued::Finished(RuntimeStatus::Completed)
    );
}

/// A turn computed on a stale history length, or consuming a message
/// another turn consumed, is refused whole; the fresh one commits once.
pub fn refuses_stale_turns(s: &dyn Store) {
    create(s, "a");
    let first = turn("a", 0, &[0]);
    let outcomes = ok(
        s.commit_turns(OWNER, LONG, &[first.clone(), first]),
        "commit_turns",
    );
    assert_eq!(outcomes[0], CommitOutcome::Committed { tasks: vec![] });
    assert_eq!(outcomes[1], CommitOutcome::Conflict, "same length, again");
    let history = ok(s.history("a"), "history").expect("exists");
    assert_eq!(history.len(), 1, "the refused turn left no trace");
    ok(s.enqueue("a", &event("e", "1"), None, false), "enqueue");
    // A turn on the right length consuming a message already consumed.
    let stale = turn("a", 1, &[0]);
    assert_eq!(
        ok(s.commit_turns(OWNER, LONG, &[stale]), "commit_turns"),
        vec![CommitOutcome::Conflict]
    );
    let status = ok(s.status("a"), "status").expect("exists");
    assert_eq!(status.history_len, 1);
}

/// A turn may not pass over an older due message; a turn that ends the
/// instance with `take_all_due` must take every due message.
pub fn consumes_messages_in_order(s: &dyn Store) {
    create(s, "a");
    ok(s.enqueue("a", &event("e", "1"), None, false), "enqueue");
    assert_eq!(
        ok(
            s.commit_turns(OWNER, LONG, &[turn("a", 0, &[1])]),
            "commit_turns"
        ),
        vec![CommitOutcome::Conflict],
        "message 0 is older and due"
    );
    assert!(matches!(
        ok(
            s.commit_turns(OWNER, LONG, &[turn("a", 0, &[0])]),
            "commit_turns"
        )[..],
        [CommitOutcome::Committed { .. }]
    ));
    let mut end = turn("a", 1, &[]);
    end.status = Some(StatusUpdate::new(RuntimeStatus::Completed, 0));
    end.discard_queued = true;
    end.take_all_due = true;
    assert_eq!(
        ok(s.commit_turns(OWNER, LONG, &[end.clone()]), "commit_turns"),
        vec![CommitOutcome::Conflict],
        "an event the client was told is queued must reach history"
    );
    end.consumed = vec![1];
    end.events = vec![record(1, 1, event("e", "1"))];
    assert!(matches!(
        ok(s.commit_turns(OWNER, LONG, &[end]), "commit_turns")[..],
        [CommitOutcome::Committed { .. }]
    ));
    assert_eq!(
        ok(s.status("a"), "status").map(|s| s.runtime_status),
        Some(RuntimeStatus::Completed)
    );
}

/// A fetch locks an instance: another owner gets nothing until the lock
/// lapses (on the store's clock), the holder may fetch it again, a commit
/// releases it.
pub fn locks_instances_while_their_turn_runs(s: &dyn Store) {
    create(s, "a");
    assert_eq!(
        ok(s.fetch_work(OWNER, SHORT, 10, ORCH), "fetch_work").len(),
        1
    );
    assert!(ok(s.fetch_work(OTHER, SHORT, 10, ORCH), "fetch_work").is_empty());
    assert_eq!(
        ok(s.fetch_work(OWNER, SHORT, 10, ORCH), "fetch_work").len(),
        1,
        "the holder may fetch again (its turn did not commit)"
    );
    wait_out(s, SHORT);
    let taken = ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work");
    assert_eq!(
        taken.len(),
        1,
        "after the lock lapsed another owner takes it"
    );
    assert_eq!(
        taken[0].attempts, 2,
        "a lost owner counts as a lost attempt"
    );
    assert!(matches!(
        ok(
            s.commit_turns(OTHER, LONG, &[turn("a", 0, &[0])]),
            "commit_turns"
        )[..],
        [CommitOutcome::Committed { .. }]
    ));
    ok(s.enqueue("a", &event("e", "1"), None, false), "enqueue");
    let again = ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    assert_eq!(again.len(), 1, "the commit released the lock");
    assert_eq!(again[0].attempts, 1, "a commit resets the attempts");
    assert_eq!(again[0].consumed_through, Some(0));
}

/// An instance created locked to an owner (its creator runs the first turn
/// from memory) is that owner's until the lock lapses: another owner
/// neither fetches it nor is told it is free.
pub fn creates_instances_locked_to_their_creator(s: &dyn Store) {
    let new = NewInstance::new("a", O, payload("1"), 0).locked_to(OWNER, SHORT);
    ok(s.create_instances(&[new]), "create_instances");
    let ids = ["a".to_owned()];
    let seen_by_other = ok(s.progress(OTHER, &ids), "progress");
    assert!(seen_by_other[0].1.held_elsewhere, "locked to its creator");
    let seen_by_owner = ok(s.progress(OWNER, &ids), "progress");
    assert!(!seen_by_owner[0].1.held_elsewhere, "its own lock");
    assert!(
        ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work").is_empty(),
        "another owner does not take it"
    );
    let mine = ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    assert_eq!(mine.len(), 1, "its creator may fetch it");
    assert_eq!(mine[0].attempts, 0, "the creator's lock is no lost attempt");
    ok(s.release_instances(OWNER), "release_instances");
    let new = NewInstance::new("b", O, payload("1"), 0).locked_to(OWNER, SHORT);
    ok(s.create_instances(&[new]), "create_instances");
    wait_out(s, SHORT);
    assert!(
        !ok(s.progress(OTHER, &["b".to_owned()]), "progress")[0]
            .1
            .held_elsewhere
    );
    let taken = ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work");
    assert!(
        taken.iter().any(|w| w.id == "b"),
        "after the lock lapsed another owner takes it"
    );
}

/// A process takes only the work it can run: orchestrators and activities
/// it has registered.
pub fn fetches_only_registered_names(s: &dyn Store) {
    create(s, "a");
    assert!(ok(
        s.fetch_work(OWNER, LONG, 10, Names(&[("other", Names::ANY_VERSION)])),
        "fetch_work"
    )
    .is_empty());
    let mut t = turn("a", 0, &[0]);
    t.tasks = vec![NewTask::new(0, A, payload("1"), RetryPolicy::default())];
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    assert!(ok(
        s.fetch_tasks(OWNER, LONG, 10, Names(&[("other", Names::ANY_VERSION)])),
        "fetch_tasks"
    )
    .is_empty());
    assert_eq!(
        ok(s.fetch_tasks(OWNER, LONG, 10, ACTS), "fetch_tasks").len(),
        1
    );
}

/// Only `lease_tasks` of a turn's tasks are leased to the committing owner;
/// the rest are any process's to take. A lapsed lease is taken over as the
/// next attempt, and the late result of the lost one is dropped.
pub fn leases_tasks_for_free_slots_only(s: &dyn Store) {
    create(s, "a");
    let mut t = turn("a", 0, &[0]);
    t.tasks = (0..3)
        .map(|seq| NewTask::new(seq, A, payload("1"), RetryPolicy::default()))
        .collect();
    t.lease_tasks = 1;
    let ids = match &ok(s.commit_turns(OWNER, SHORT, &[t]), "commit_turns")[..] {
        [CommitOutcome::Committed { tasks }] => tasks.clone(),
        other => panic!("not committed: {other:?}"),
    };
    assert_eq!(ids.len(), 3);
    let taken = ok(s.fetch_tasks(OTHER, LONG, 10, ACTS), "fetch_tasks");
    let taken_ids: Vec<i64> = taken.iter().map(|t| t.id).collect();
    assert_eq!(taken_ids, ids[1..].to_vec(), "the unleased ones");
    assert!(taken.iter().all(|t| t.attempt == 1));
    wait_out(s, SHORT);
    let late = ok(s.fetch_tasks(OTHER, LONG, 10, ACTS), "fetch_tasks");
    assert_eq!(late.len(), 1, "the lapsed lease is taken over");
    assert_eq!((late[0].id, late[0].attempt), (ids[0], 2));
    let done = |attempt: u32, out: &str| {
        TaskResult::new(
            TaskRef {
                id: ids[0],
                attempt,
            },
            "a",
            TaskOutcome::Done(Event::ActivityCompleted {
                seq: 0,
                output: payload(out),
            }),
        )
    };
    ok(
        s.finish_tasks(OWNER, &[done(1, "\"late\"")]),
        "finish_tasks",
    );
    ok(s.finish_tasks(OTHER, &[done(2, "\"new\"")]), "finish_tasks");
    let work = ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    let completions: Vec<&Event> = work[0]
        .messages
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, Event::ActivityCompleted { .. }))
        .collect();
    assert_eq!(
        completions,
        vec![&Event::ActivityCompleted {
            seq: 0,
            output: payload("\"new\"")
        }],
        "exactly one completion, the current attempt's"
    );
}

/// Renewal keeps a lease and says which are still held; a retry comes back
/// after its delay; a released attempt is due at once and not counted.
pub fn renews_retries_and_releases_attempts(s: &dyn Store) {
    create(s, "a");
    let mut t = turn("a", 0, &[0]);
    t.tasks = vec![NewTask::new(0, A, payload("1"), RetryPolicy::default())];
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    let first = ok(s.fetch_tasks(OWNER, SHORT, 10, ACTS), "fetch_tasks");
    let r = first[0].task_ref();
    let stale = TaskRef {
        id: r.id,
        attempt: r.attempt + 7,
    };
    assert_eq!(
        ok(s.renew_tasks(OWNER, &[r, stale], LONG), "renew_tasks"),
        vec![r]
    );
    wait_out(s, SHORT);
    assert!(
        ok(s.fetch_tasks(OTHER, LONG, 10, ACTS), "fetch_tasks").is_empty(),
        "the renewed lease holds past its first length"
    );
    let retry = TaskOutcome::Retry {
        delay: SHORT,
        failures: 1,
        error: ActivityFailure::Panic("first".to_owned()),
    };
    ok(
        s.finish_tasks(OWNER, &[TaskResult::new(r, "a", retry)]),
        "finish_tasks",
    );
    assert!(ok(s.fetch_tasks(OTHER, LONG, 10, ACTS), "fetch_tasks").is_empty());
    wait_out(s, SHORT);
    let second = ok(s.fetch_tasks(OTHER, LONG, 10, ACTS), "fetch_tasks");
    assert_eq!((second[0].attempt, second[0].failures), (2, 1));
    ok(
        s.finish_tasks(
            OTHER,
            &[TaskResult::new(
                second[0].task_ref(),
                "a",
                TaskOutcome::Release,
            )],
        ),
        "finish_tasks",
    );
    let third = ok(s.fetch_tasks(OWNER, LONG, 10, ACTS), "fetch_tasks");
    assert_eq!(third[0].attempt, 2, "a released attempt does not count");
}

/// A turn that ends an instance with `discard_queued` drops its queued
/// messages and tasks, leased or not, but queues the tasks the turn itself
/// calls; a late result for it is dropped.
pub fn drops_what_a_finished_instance_had_queued(s: &dyn Store) {
    create(s, "a");
    let mut t = turn("a", 0, &[0]);
    t.tasks = (0..2)
        .map(|seq| NewTask::new(seq, A, payload("1"), RetryPolicy::default()))
        .collect();
    t.lease_tasks = 1;
    t.messages = vec![NewMessage::new(Event::TimerFired { seq: 9 }, i64::MAX)];
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    let mut end = turn("a", 1, &[]);
    end.status = Some(StatusUpdate::new(RuntimeStatus::Terminated, 0));
    end.discard_queued = true;
    end.tasks = vec![NewTask::new(
        5,
        A,
        payload("\"last\""),
        RetryPolicy::default(),
    )];
    ok(s.commit_turns(OWNER, LONG, &[end]), "commit_turns");
    let left = ok(s.fetch_tasks(OTHER, LONG, 10, ACTS), "fetch_tasks");
    assert_eq!(
        left.iter().map(|t| t.seq).collect::<Vec<_>>(),
        vec![5],
        "only the last turn's own call runs"
    );
    ok(
        s.finish_tasks(
            OTHER,
            &[TaskResult::new(
                left[0].task_ref(),
                "a",
                TaskOutcome::Done(Event::ActivityCompleted {
                    seq: 5,
                    output: payload("1"),
                }),
            )],
        ),
        "finish_tasks",
    );
    assert!(ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work").is_empty());
    assert_eq!(
        ok(s.next_due(), "next_due").message,
        None,
        "the timer is gone"
    );
}

/// A stuck instance stays set aside for its retry time, even from its
/// owner; a terminating message with `wake_stuck` releases it at once.
pub fn sets_stuck_instances_aside(s: &dyn Store) {
    create(s, "a");
    ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    let failure = Failure::new(FailureKind::Nondeterminism, "differs");
    ok(s.mark_stuck(OWNER, "a", &failure, LONG, true), "mark_stuck");
    let status = ok(s.status("a"), "status").expect("exists");
    assert_eq!(status.runtime_status, RuntimeStatus::Stuck);
    assert_eq!(status.failure, Some(failure));
    assert!(ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work").is_empty());
    assert!(ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work").is_empty());
    let end = Event::Terminated {
        reason: "operator".to_owned(),
    };
    ok(s.enqueue("a", &end, None, true), "enqueue");
    let work = ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work");
    assert_eq!(work.len(), 1, "released for the termination");
    assert_eq!(work[0].status, RuntimeStatus::Stuck);
    assert_eq!(work[0].messages.len(), 2, "nothing was consumed meanwhile");
}

/// A turn delivering a result straight from a worker may not overtake a
/// message that was due before it: it is refused, and the next fetch takes
/// both in order.
pub fn completions_do_not_overtake_older_due_messages(s: &dyn Store) {
    let task = started_with_a_leased_call(s, "a");
    ok(s.enqueue("a", &event("e", "1"), None, false), "enqueue");
    let mut done = completion_turn("a", task);
    done.status = Some(StatusUpdate::new(
        RuntimeStatus::Running,
        ok(s.now(), "now"),
    ));
    assert_eq!(
        ok(s.commit_turns(OWNER, LONG, &[done]), "commit_turns"),
        vec![CommitOutcome::Conflict]
    );
}

/// A message queued after a turn's time may be passed over by that turn
/// even when it delivers results from a worker: it is taken next.
pub fn completions_may_pass_messages_queued_after_them(s: &dyn Store) {
    let task = started_with_a_leased_call(s, "a");
    let turn_time = ok(s.now(), "now");
    wait_out(s, Duration::from_millis(2));
    ok(s.enqueue("a", &event("later", "1"), None, false), "enqueue");
    let mut done = completion_turn("a", task);
    done.status = Some(StatusUpdate::new(RuntimeStatus::Running, turn_time));
    assert!(matches!(
        ok(s.commit_turns(OWNER, LONG, &[done]), "commit_turns")[..],
        [CommitOutcome::Committed { .. }]
    ));
    assert_eq!(
        seqs(s, OWNER, "a"),
        vec![1],
        "the later message is taken next"
    );
}

/// A turn may keep its instance locked to its owner (its next turn is
/// driven from memory): another owner neither fetches it nor is told it is
/// free until the lock lapses. Peeking at due messages reads them without
/// taking or locking anything.
pub fn keeps_the_lock_when_asked_and_peeks_without_taking(s: &dyn Store) {
    create(s, "a");
    ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    let mut t = turn("a", 0, &[0]);
    t.keep_lock = Some(SHORT);
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    ok(s.enqueue("a", &event("e", "1"), None, false), "enqueue");
    let ids = ["a".to_owned()];
    assert!(ok(s.progress(OTHER, &ids), "progress")[0].1.held_elsewhere);
    assert!(ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work").is_empty());
    for _ in 0..2 {
        let peeked = ok(s.peek_due(&ids), "peek_due");
        assert_eq!(peeked, vec![("a".to_owned(), vec![(1, event("e", "1"))])]);
    }
    assert!(
        ok(s.peek_due(&["nope".to_owned()]), "peek_due").is_empty(),
        "nothing for an unknown instance"
    );
    wait_out(s, SHORT);
    assert_eq!(seqs(s, OTHER, "a"), vec![1], "taken once the lock lapsed");
}

/// Reading everything queued for an instance, due or not, takes nothing:
/// a scheduled start's `Started` is there before it falls due.
pub fn reads_everything_queued_due_or_not(s: &dyn Store) {
    let mut later = NewInstance::new("a", O, payload("1"), 0);
    later.visible_at = ok(s.now(), "now") + 3_600_000_000;
    later.version = 3;
    ok(s.create_instances(&[later.clone()]), "create_instances");
    ok(s.enqueue("a", &event("e", "1"), None, false), "enqueue");
    let ids = ["a".to_owned(), "nope".to_owned()];
    for _ in 0..2 {
        assert_eq!(
            ok(s.queued(&ids), "queued"),
            vec![(
                "a".to_owned(),
                vec![(0, later.started()), (1, event("e", "1"))]
            )],
            "both, the start still to come included; nothing for an unknown id"
        );
    }
    assert_eq!(
        ok(s.peek_due(&ids), "peek_due"),
        vec![("a".to_owned(), vec![(1, event("e", "1"))])],
        "only the event is due"
    );
    assert!(ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work").is_empty());
}

/// A turn starts its children (each with its parent in its `Started`) and
/// queues its messages to other instances with itself; a child whose id is
/// taken is not started and its parent is told at once; a message for an
/// unknown instance is dropped.
pub fn starts_children_and_sends_messages(s: &dyn Store) {
    create(s, "p");
    create(s, "taken");
    create(s, "b");
    ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    let parent = |seq| {
        Some(ParentRef {
            id: "p".to_owned(),
            seq,
        })
    };
    let mut t = turn("p", 0, &[0]);
    let mut child = NewInstance::new("p:1", O, payload("5"), 0);
    child.parent = parent(1);
    let mut clash = NewInstance::new("taken", O, payload("6"), 0);
    clash.parent = parent(2);
    t.children = vec![child, clash];
    t.sends = vec![
        Outgoing::new("b", event("note", "1"), false),
        Outgoing::new("nobody", event("note", "2"), false),
    ];
    assert!(matches!(
        ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns")[..],
        [CommitOutcome::Committed { .. }]
    ));
    ok(
        s.commit_turns(OWNER, LONG, &[turn("taken", 0, &[0]), turn("b", 0, &[0])]),
        "commit_turns",
    );
    let work = ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work");
    let of = |id: &str| -> Vec<Event> {
        work.iter()
            .find(|w| w.id == id)
            .map(|w| w.messages.iter().map(|(_, e)| e.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        of("p:1"),
        vec![Event::Started {
            name: O.to_owned(),
            input: payload("5"),
            seed: None,
            first_seq: 0,
            parent: parent(1),
            version: 1,
        }],
        "the child is started, knowing its parent"
    );
    assert_eq!(of("b"), vec![event("note", "1")]);
    assert_eq!(
        of("p"),
        vec![Event::ChildFailed {
            seq: 2,
            failure: ChildFailure::IdTaken("taken".to_owned()),
        }],
        "the parent learns its child's id was taken"
    );
    assert_eq!(ok(s.status("nobody"), "status"), None);
}

/// A suspended instance is fetched by no one and records why; resuming
/// makes its messages takeable again. A finished instance can be purged
/// (one not finished cannot); a list is newest first, filtered and paged.
pub fn suspends_resumes_purges_and_lists(s: &dyn Store) {
    // Not started yet: nothing is recorded (its history opens with
    // `Started`), and resumed it is pending again.
    create(s, "p");
    assert_eq!(
        ok(s.set_suspended("p", true, "early"), "set_suspended"),
        Transition::Done
    );
    assert!(ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work").is_empty());
    assert_eq!(ok(s.history("p"), "history"), Some(Vec::new()));
    ok(s.set_suspended("p", false, "go"), "set_suspended");
    let p = ok(s.status("p"), "status").expect("p");
    assert_eq!(
        (p.runtime_status, p.history_len),
        (RuntimeStatus::Pending, 0)
    );
    assert_eq!(seqs(s, OWNER, "p"), vec![0], "its start is taken");
    let mut done = turn("p", 0, &[0]);
    done.status = Some(StatusUpdate::new(RuntimeStatus::Completed, 0));
    ok(s.commit_turns(OWNER, LONG, &[done]), "commit_turns");
    // Started: suspending and resuming are recorded.
    create(s, "a");
    assert_eq!(seqs(s, OWNER, "a"), vec![0]);
    ok(
        s.commit_turns(OWNER, LONG, &[turn("a", 0, &[0])]),
        "commit_turns",
    );
    ok(s.enqueue("a", &event("x", "1"), None, false), "enqueue");
    assert_eq!(
        ok(s.set_suspended("a", true, "why"), "set_suspended"),
        Transition::Done
    );
    assert_eq!(
        ok(s.set_suspended("a", true, "again"), "set_suspended"),
        Transition::Refused(RuntimeStatus::Suspended)
    );
    assert_eq!(
        ok(s.set_suspended("nope", true, "x"), "set_suspended"),
        Transition::NotFound
    );
    assert!(ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work").is_empty());
    let history = ok(s.history("a"), "history").expect("a");
    assert_eq!(
        history.last().map(|r| &r.event),
        Some(&Event::Suspended {
            reason: "why".to_owned()
        })
    );
    let status = ok(s.status("a"), "status").expect("a");
    assert_eq!(status.runtime_status, RuntimeStatus::Suspended);
    assert_eq!(status.history_len, 2);
    assert_eq!(
        ok(s.purge("a"), "purge"),
        Transition::Refused(RuntimeStatus::Suspended)
    );
    assert_eq!(
        ok(s.set_suspended("a", false, "go"), "set_suspended"),
        Transition::Done
    );
    assert_eq!(seqs(s, OWNER, "a"), vec![1], "takeable again");
    let mut end = turn("a", 3, &[1]);
    end.status = Some(StatusUpdate::new(RuntimeStatus::Completed, 0));
    ok(s.commit_turns(OWNER, LONG, &[end]), "commit_turns");
    create(s, "b");
    let all = ok(
        s.list(&ListQuery {
            limit: 10,
            ..ListQuery::default()
        }),
        "list",
    );
    let ids = |list: &[crate::status::InstanceStatus]| -> Vec<String> {
        list.iter().map(|i| i.id.clone()).collect()
    };
    assert_eq!(ids(&all), ["p", "b", "a"], "newest first (ties by id)");
    let completed = ok(
        s.list(&ListQuery {
            statuses: vec![RuntimeStatus::Completed],
            limit: 10,
            ..ListQuery::default()
        }),
        "list",
    );
    assert_eq!(ids(&completed), ["p", "a"]);
    assert_eq!(ok(s.purge("a"), "purge"), Transition::Done);
    assert_eq!(ok(s.status("a"), "status"), None);
    assert_eq!(ok(s.history("a"), "history"), None);
    assert_eq!(
        ok(s.purge_finished(i64::MAX, 10), "purge_finished"),
        vec!["p".to_owned()],
        "p finished, b is not"
    );
}

/// A call nobody waits for is cancelled with the turn: a queued one never
/// runs; a leased one is no longer renewed, its result is dropped, and it
/// is not attempted again.
pub fn cancels_calls_nobody_waits_for(s: &dyn Store) {
    create(s, "a");
    let mut t = turn("a", 0, &[0]);
    t.tasks = (0..2)
        .map(|seq| NewTask::new(seq, A, payload("1"), RetryPolicy::default()))
        .collect();
    t.lease_tasks = 1;
    let ids = match &ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns")[..] {
        [CommitOutcome::Committed { tasks }] => tasks.clone(),
        other => panic!("not committed: {other:?}"),
    };
    let leased = TaskRef {
        id: ids[0],
        attempt: 1,
    };
    let mut cancel = turn("a", 1, &[]);
    cancel.cancel_tasks = vec![0, 1];
    ok(s.commit_turns(OWNER, LONG, &[cancel]), "commit_turns");
    assert!(
        ok(s.fetch_tasks(OTHER, LONG, 10, ACTS), "fetch_tasks").is_empty(),
        "the queued call never runs"
    );
    assert!(
        ok(s.renew_tasks(OWNER, &[leased], LONG), "renew_tasks").is_empty(),
        "the running one is not renewed"
    );
    let done = TaskResult::new(
        leased,
        "a",
        TaskOutcome::Done(Event::ActivityCompleted {
            seq: 0,
            output: payload("2"),
        }),
    );
    ok(s.finish_tasks(OWNER, &[done]), "finish_tasks");
    assert!(
        ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work").is_empty(),
        "its result is dropped"
    );
    assert!(ok(s.fetch_tasks(OTHER, LONG, 10, ACTS), "fetch_tasks").is_empty());
}

/// Progress, the release of locks and the next due times.
pub fn reports_progress_and_due_times(s: &dyn Store) {
    create(s, "a");
    ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    ok(s.release_instances(OWNER), "release_instances");
    assert_eq!(
        ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work").len(),
        1,
        "released at once"
    );
    let mut t = turn("a", 0, &[0]);
    let soon = ok(s.now(), "now") + 60_000_000;
    t.messages = vec![NewMessage::new(Event::TimerFired { seq: 0 }, soon)];
    ok(s.commit_turns(OTHER, LONG, &[t]), "commit_turns");
    let progress = ok(s.progress(OWNER, &["a".to_owned()]), "progress");
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].1.history_len, 1);
    assert_eq!(progress[0].1.consumed_through, Some(0));
    assert_eq!(progress[0].1.status, RuntimeStatus::Running);
    assert!(
        !progress[0].1.held_elsewhere,
        "the commit released the lock"
    );
    let due = ok(s.next_due(), "next_due")
        .message
        .expect("a timer is pending");
    assert!(
        due <= Duration::from_secs(60) && due > Duration::from_secs(50),
        "{due:?}"
    );
    assert!(
        ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work").is_empty(),
        "a timer is not due before its time"
    );
}

/// A turn's custom status is kept until a later turn sets another; a turn
/// that sets none leaves it as it was.
pub fn keeps_the_last_custom_status(s: &dyn Store) {
    create(s, "a");
    assert_eq!(ok(s.status("a"), "status").expect("a").custom_status, None);
    ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    let mut t = turn("a", 0, &[0]);
    if let Some(st) = t.status.as_mut() {
        st.custom_status = Some(payload(r#"{"stage":1}"#));
    }
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    let custom = |s: &dyn Store| ok(s.status("a"), "status").expect("a").custom_status;
    assert_eq!(custom(s), Some(payload(r#"{"stage":1}"#)));
    ok(s.enqueue("a", &event("e", "1"), None, false), "enqueue");
    ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    ok(
        s.commit_turns(OWNER, LONG, &[turn("a", 1, &[1])]),
        "commit_turns",
    );
    assert_eq!(custom(s), Some(payload(r#"{"stage":1}"#)), "unchanged");
    ok(s.enqueue("a", &event("e", "2"), None, false), "enqueue");
    ok(s.fetch_work(OWNER, LONG, 10, ORCH), "fetch_work");
    let mut t = turn("a", 2, &[2]);
    if let Some(st) = t.status.as_mut() {
        st.custom_status = Some(payload(r#""done""#));
    }
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    assert_eq!(custom(s), Some(payload(r#""done""#)));
}

/// Continue-as-new: the history, timers, activity calls and results go; the
/// new `Started` and the carried events are queued first, then the events
/// still queued, in their order; the history length is 0 and the execution
/// is the new one's, so a turn of the old one is refused.
pub fn restarts_an_instance_afresh(s: &dyn Store) {
    create(s, "a");
    let mut t = turn("a", 0, &[0]);
    t.tasks = vec![NewTask::new(0, A, payload("1"), RetryPolicy::default())];
    t.lease_tasks = 1;
    // A timer still to come, and one due but not taken yet.
    t.messages = vec![
        NewMessage::new(Event::TimerFired { seq: 1 }, i64::MAX),
        NewMessage::new(Event::TimerFired { seq: 2 }, 0),
    ];
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    ok(
        s.enqueue("a", &event("queued", "1"), None, false),
        "enqueue",
    );
    let started = Event::Started {
        name: O.to_owned(),
        input: payload("2"),
        seed: Some(7),
        first_seq: 3,
        parent: None,
        version: 1,
    };
    let mut again = turn("a", 1, &[]);
    again.events = vec![record(1, 1, event("dropped", "0"))];
    again.restart = Some(Restart::new(started.clone(), vec![event("carried", "1")]));
    assert!(matches!(
        ok(s.commit_turns(OWNER, LONG, &[again]), "commit_turns")[..],
        [CommitOutcome::Committed { .. }]
    ));
    assert_eq!(ok(s.history("a"), "history"), Some(Vec::new()));
    let status = ok(s.status("a"), "status").expect("a");
    assert_eq!(status.history_len, 0);
    assert_eq!(status.runtime_status, RuntimeStatus::Running);
    assert!(
        ok(s.fetch_tasks(OTHER, LONG, 10, ACTS), "fetch_tasks").is_empty(),
        "the old execution's calls are gone"
    );
    let work = ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work");
    let a = work.iter().find(|w| w.id == "a").expect("a has work");
    let events: Vec<&Event> = a.messages.iter().map(|(_, e)| e).collect();
    assert_eq!(
        events,
        vec![&started, &event("carried", "1"), &event("queued", "1")],
        "the start, the carried events, then the events queued (the due timer is gone)"
    );
    let seqs: Vec<u64> = a.messages.iter().map(|(m, _)| *m).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!(a.history_len, 0);
    assert_eq!(a.execution, 3, "the new execution's number");
    let stale = turn("a", 0, &seqs);
    assert_eq!(
        ok(s.commit_turns(OTHER, LONG, &[stale]), "commit_turns"),
        vec![CommitOutcome::Conflict],
        "a turn computed on the old execution is refused, lengths alike"
    );
    let mut fresh = turn("a", 0, &seqs);
    fresh.execution = 3;
    ok(s.commit_turns(OTHER, LONG, &[fresh]), "commit_turns");
    assert_eq!(
        ok(s.next_due(), "next_due").message,
        None,
        "the old execution's timer is gone"
    );
}

/// Entities: a message to an entity creates its row (running, no history,
/// no record) the first time; its turns store a record in place of events
/// and count themselves in the history length, so a turn computed on an
/// older record is refused; setting one aside keeps its record; it can be
/// purged only with nothing queued; lists leave entities out unless asked
/// for their type.
pub fn keeps_entities_apart_and_versions_their_turns(s: &dyn Store) {
    const E: &str = "@Counter";
    let op = |n: &str| Event::Operation {
        op: "add".to_owned(),
        input: payload(n),
        reply_to: None,
        holder: None,
    };
    ok(
        s.send(&[
            Outgoing::to_entity("@Counter@k", E, op("1"), 0),
            Outgoing::to_entity("@Counter@k", E, op("2"), 0),
        ]),
        "send",
    );
    let status = ok(s.status("@Counter@k"), "status").expect("the entity's row exists");
    assert_eq!(status.runtime_status, RuntimeStatus::Running);
    assert_eq!((status.history_len, status.output), (0, None));
    let work = ok(
        s.fetch_work(OWNER, LONG, 10, Names(&[(E, Names::ANY_VERSION)])),
        "fetch_work",
    );
    assert_eq!(work.len(), 1, "an entity with no history is fetched");
    let w = &work[0];
    assert_eq!(
        w.messages.iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let entity_turn = |len: u64, consumed: Vec<u64>, record: &str| {
        let mut t = TurnCommit::new("@Counter@k", len);
        t.entity_turn = true;
        t.consumed = consumed;
        t.status = Some(StatusUpdate {
            output: Some(payload(record)),
            ..StatusUpdate::new(RuntimeStatus::Running, 1)
        });
        t
    };
    assert_eq!(
        ok(
            s.commit_turns(OWNER, LONG, &[entity_turn(0, vec![0, 1], r#"{"state":3}"#)]),
            "commit_turns"
        ),
        vec![CommitOutcome::Committed { tasks: vec![] }]
    );
    let status = ok(s.status("@Counter@k"), "status").expect("exists");
    assert_eq!(status.history_len, 1, "an entity turn counts itself");
    assert_eq!(status.output, Some(payload(r#"{"state":3}"#)));
    assert!(
        ok(s.history("@Counter@k"), "history")
            .unwrap_or_default()
            .is_empty(),
        "an entity keeps no history"
    );
    ok(
        s.send(&[Outgoing::to_entity("@Counter@k", E, op("4"), 0)]),
        "send",
    );
    let work = ok(
        s.fetch_work(OWNER, LONG, 10, Names(&[(E, Names::ANY_VERSION)])),
        "fetch_work",
    );
    assert_eq!(
        work[0].output,
        Some(payload(r#"{"state":3}"#)),
        "the record comes with the work"
    );
    let work = ok(
        s.fetch_work(OTHER, LONG, 10, Names(&[(E, Names::ANY_VERSION)])),
        "fetch_work",
    );
    assert!(work.is_empty(), "locked to its owner while its turn runs");
    assert_eq!(
        ok(
            s.commit_turns(OWNER, LONG, &[entity_turn(0, vec![2], r#"{"state":7}"#)]),
            "commit_turns"
        ),
        vec![CommitOutcome::Conflict],
        "a turn computed on an older record is refused"
    );
    let failure = Failure::new(FailureKind::Payload, "its state does not decode");
    ok(
        s.mark_stuck(OWNER, "@Counter@k", &failure, LONG, true),
        "mark_stuck",
    );
    let status = ok(s.status("@Counter@k"), "status").expect("exists");
    assert_eq!(status.runtime_status, RuntimeStatus::Stuck);
    assert_eq!(
        status.output,
        Some(payload(r#"{"state":3}"#)),
        "set aside, its record kept"
    );
    assert!(
        matches!(ok(s.purge("@Counter@k"), "purge"), Transition::Refused(_)),
        "an entity with operations queued is not purged"
    );
    create(s, "orch-1");
    let listed = ok(
        s.list(&ListQuery {
            limit: 10,
            ..ListQuery::default()
        }),
        "list",
    );
    assert_eq!(
        listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec!["orch-1"],
        "entities are not instances in a plain list"
    );
    let listed = ok(
        s.list(&ListQuery {
            name: Some(E.to_owned()),
            limit: 10,
            ..ListQuery::default()
        }),
        "list",
    );
    assert_eq!(listed.len(), 1, "an entity type's list holds its entities");
    // Scheduled: not due before its time.
    let later = ok(s.now(), "now") + 3_600_000_000;
    ok(
        s.send(&[Outgoing::to_entity("@Counter@later", E, op("1"), later)]),
        "send",
    );
    let work = ok(
        s.fetch_work(OTHER, LONG, 10, Names(&[(E, Names::ANY_VERSION)])),
        "fetch_work",
    );
    assert!(
        work.iter().all(|w| w.id != "@Counter@later"),
        "a scheduled signal is not due before its time"
    );
    // With nothing queued and no state, an entity can go.
    ok(
        s.send(&[Outgoing::to_entity("@Counter@idle", E, op("1"), 0)]),
        "send",
    );
    let work = ok(
        s.fetch_work(OTHER, LONG, 10, Names(&[(E, Names::ANY_VERSION)])),
        "fetch_work",
    );
    let idle = work
        .iter()
        .find(|w| w.id == "@Counter@idle")
        .expect("fetched");
    let mut t = entity_turn(0, idle.messages.iter().map(|m| m.0).collect(), "{}");
    t.instance = "@Counter@idle".to_owned();
    assert_eq!(
        ok(s.commit_turns(OTHER, LONG, &[t]), "commit_turns"),
        vec![CommitOutcome::Committed { tasks: vec![] }]
    );
    assert_eq!(ok(s.purge("@Counter@idle"), "purge"), Transition::Done);
    assert!(ok(s.status("@Counter@idle"), "status").is_none());
}

/// What is under way for one process and what comes next: a due message
/// of an instance it runs and may take, an attempt it runs, or a due task
/// of an activity it runs is work under way; a delayed message is the next
/// thing. Work another process would take, an instance another owner
/// holds, an attempt cancelled while it runs and an event for a start
/// still to come are not.
pub fn looks_ahead(s: &dyn Store) {
    let look = |owner: &str, instances, activities| {
        ok(s.lookahead(owner, instances, activities), "lookahead")
    };
    assert_eq!(look(OWNER, ORCH, ACTS), super::Lookahead::default());
    create(s, "a");
    assert!(look(OWNER, ORCH, ACTS).busy, "a start is due");
    assert!(
        !look(OWNER, Names(&[("other", Names::ANY_VERSION)]), ACTS).busy,
        "not for a process that does not run it"
    );
    ok(s.fetch_work(OTHER, LONG, 10, ORCH), "fetch_work");
    assert!(!look(OWNER, ORCH, ACTS).busy, "another owner holds it");
    assert!(look(OTHER, ORCH, ACTS).busy, "its holder's turn");
    let mut t = turn("a", 0, &[0]);
    t.tasks = (0..2)
        .map(|seq| NewTask::new(seq, A, payload("1"), RetryPolicy::default()))
        .collect();
    t.lease_tasks = 1;
    let later = ok(s.now(), "now") + 3_600_000_000;
    t.messages = vec![NewMessage::new(Event::TimerFired { seq: 2 }, later)];
    ok(s.commit_turns(OTHER, LONG, &[t]), "commit_turns");
    assert!(look(OWNER, ORCH, ACTS).busy, "a call due for its worker");
    assert!(
        !look(OWNER, ORCH, Names(&[("other", Names::ANY_VERSION)])).busy,
        "a call of an activity it does not run, and one leased elsewhere"
    );
    assert!(look(OTHER, ORCH, Names(&[])).busy, "the attempt it runs");
    let mut cancel = turn("a", 1, &[]);
    cancel.cancel_tasks = vec![0, 1];
    ok(s.commit_turns(OTHER, LONG, &[cancel]), "commit_turns");
    let ahead = look(OTHER, ORCH, ACTS);
    assert!(
        !ahead.busy,
        "only a timer an hour away, and an attempt nobody waits for"
    );
    let next = ahead.next.expect("the timer");
    assert!(next > Duration::from_secs(3_500) && next <= Duration::from_secs(3_600));
    assert_eq!(
        look(OTHER, Names(&[("other", Names::ANY_VERSION)]), ACTS).next,
        None,
        "another process's timer"
    );
    let mut scheduled = NewInstance::new("b", O, payload("1"), 0);
    scheduled.visible_at = ok(s.now(), "now") + 7_200_000_000;
    ok(s.create_instances(&[scheduled]), "create_instances");
    ok(s.enqueue("b", &event("e", "1"), None, false), "enqueue");
    assert!(
        !look(OWNER, ORCH, ACTS).busy,
        "an event for a start still to come waits for it"
    );
}

/// A suspend that lands between a fetch and the instance's first commit
/// (it records nothing: the instance has no history yet) is not undone by
/// that commit: the turn is refused and the instance stays suspended.
pub fn a_suspend_before_the_first_commit_holds(s: &dyn Store) {
    create(s, "a");
    let seqs = seqs(s, OWNER, "a");
    assert_eq!(
        ok(s.set_suspended("a", true, "hold"), "set_suspended"),
        Transition::Done
    );
    let mut t = turn("a", 0, &seqs);
    t.status = Some(StatusUpdate::new(RuntimeStatus::Running, 0));
    assert_eq!(
        ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns"),
        vec![CommitOutcome::Conflict]
    );
    let status = ok(s.status("a"), "status").expect("exists");
    assert_eq!(status.runtime_status, RuntimeStatus::Suspended);
    assert_eq!(ok(s.history("a"), "history").expect("exists").len(), 0);
}

/// Instances whose scheduled start is still to come, with events already
/// due for them, do not use up a fetch's limit: ready work behind them is
/// taken.
pub fn starts_still_to_come_do_not_hide_ready_work(s: &dyn Store) {
    let later = ok(s.now(), "now") + 3_600_000_000;
    for id in ["s1", "s2"] {
        let mut scheduled = NewInstance::new(id, O, payload("1"), 0);
        scheduled.visible_at = later;
        ok(s.create_instances(&[scheduled]), "create_instances");
        // Due long ago: they sort before any ready work.
        let mut early = Outgoing::new(id, event("e", "1"), false);
        early.visible_at = 1;
        ok(s.send(&[early]), "send");
    }
    let mut ready = NewInstance::new("ready", O, payload("1"), 0);
    ready.visible_at = ok(s.now(), "now");
    ok(s.create_instances(&[ready]), "create_instances");
    let work = ok(s.fetch_work(OWNER, LONG, 2, ORCH), "fetch_work");
    let ids: Vec<&str> = work.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, vec!["ready"]);
}

/// Counts per status cover orchestration instances, not entities, and
/// narrow to one orchestrator when asked.
pub fn counts_instances_by_status(s: &dyn Store) {
    create(s, "a");
    create(s, "b");
    let mut other = NewInstance::new("c", "other", payload("1"), 0);
    other.visible_at = 0;
    ok(s.create_instances(&[other]), "create_instances");
    let signal = Outgoing::to_entity(
        crate::history::entity_id("Counter", "k"),
        crate::history::entity_type_name("Counter"),
        event("e", "1"),
        0,
    );
    ok(s.send(&[signal]), "send");
    let seqs = seqs(s, OWNER, "a");
    let mut done = turn("a", 0, &seqs);
    done.status = Some(StatusUpdate::new(RuntimeStatus::Completed, 0));
    ok(s.commit_turns(OWNER, LONG, &[done]), "commit_turns");
    let all = ok(s.counts(None), "counts");
    let total: u64 = all.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 3, "no entity among them: {all:?}");
    assert!(all.contains(&(RuntimeStatus::Completed, 1)), "{all:?}");
    assert_eq!(
        ok(s.counts(Some("other")), "counts"),
        vec![(RuntimeStatus::Pending, 1)]
    );
    assert_eq!(ok(s.counts(Some("nobody")), "counts"), vec![]);
}

/// An instance's activity calls: attempts, failures and whether one runs,
/// by sequence number; cancelled ones are left out.
pub fn reads_an_instances_tasks(s: &dyn Store) {
    create(s, "a");
    assert_eq!(ok(s.tasks_of("a"), "tasks_of"), vec![]);
    let seqs = seqs(s, OWNER, "a");
    let mut t = turn("a", 0, &seqs);
    t.tasks = (0..2)
        .map(|seq| NewTask::new(seq, A, payload("1"), RetryPolicy::default()))
        .collect();
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    let leased = ok(s.fetch_tasks(OWNER, LONG, 1, ACTS), "fetch_tasks");
    let tasks = ok(s.tasks_of("a"), "tasks_of");
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let running: Vec<u64> = tasks.iter().filter(|t| t.running).map(|t| t.seq).collect();
    assert_eq!(running, vec![leased[0].seq]);
    let held = tasks.iter().find(|t| t.running).expect("one runs");
    assert_eq!((held.attempts, held.failures), (1, 0));
    assert_eq!(held.last_error, None);
    // A failed attempt is kept as the call's last error, the newest one.
    for (n, error) in [(1, "a timeout"), (2, "a refusal")] {
        let error = ActivityFailure::Error(payload(&format!("\"{error}\"")));
        let retry = TaskOutcome::Retry {
            delay: Duration::ZERO,
            failures: n,
            error: error.clone(),
        };
        let attempt = match n {
            1 => leased[0].clone(),
            _ => ok(s.fetch_tasks(OWNER, LONG, 10, ACTS), "fetch_tasks")
                .into_iter()
                .find(|t| t.seq == leased[0].seq)
                .expect("the retried call is due again"),
        };
        let r = TaskResult::new(attempt.task_ref(), "a", retry);
        ok(s.finish_tasks(OWNER, &[r]), "finish_tasks");
        let tasks = ok(s.tasks_of("a"), "tasks_of");
        let t = tasks
            .iter()
            .find(|t| t.seq == attempt.seq)
            .expect("still there");
        assert_eq!((t.failures, t.running), (n, false), "{t:?}");
        assert_eq!(t.last_error, Some(error), "{t:?}");
    }
    assert_eq!(ok(s.tasks_of("nobody"), "tasks_of"), vec![]);
}

/// A page of history is read from any index without the rest, in order;
/// past the end it is empty, and an unknown instance has none.
pub fn reads_a_page_of_history(s: &dyn Store) {
    create(s, "a");
    let seqs = seqs(s, OWNER, "a");
    let mut t = TurnCommit::new("a", 0);
    t.events = (0..7)
        .map(|i| record(i, i / 3, event("e", &i.to_string())))
        .collect();
    t.consumed = seqs;
    t.status = Some(StatusUpdate::new(RuntimeStatus::Running, 0));
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    let all = ok(s.history("a"), "history").expect("a exists");
    assert_eq!(all.len(), 7);
    let page =
        |from, limit| ok(s.history_range("a", from, limit), "history_range").expect("a exists");
    assert_eq!(page(0, 100), all);
    assert_eq!(page(2, 3), all[2..5].to_vec());
    assert_eq!(page(5, 3), all[5..].to_vec(), "the end of history");
    assert_eq!(page(7, 3), vec![]);
    assert_eq!(page(0, 0), vec![]);
    assert_eq!(ok(s.history_range("nobody", 0, 10), "history_range"), None);
}

/// An instance of a version newer than the newest a process runs is left
/// for a newer build (a rolling deploy), by fetches and by the lookahead;
/// one of that version or older is taken, so that a version no longer
/// registered is parked with a diagnostic rather than never looked at.
pub fn leaves_newer_versions_to_newer_builds(s: &dyn Store) {
    let mut new = NewInstance::new("v3", O, payload("1"), 0);
    new.version = 3;
    ok(s.create_instances(&[new]), "create_instances");
    let v1 = Names(&[(O, 1)]);
    let v2 = Names(&[(O, 2)]);
    assert!(ok(s.fetch_work(OWNER, LONG, 10, v2), "fetch_work").is_empty());
    let ahead = ok(s.lookahead(OWNER, v2, ACTS), "lookahead");
    assert!(!ahead.busy, "a newer build's start is not work here");
    let mut old = NewInstance::new("v1", O, payload("1"), 0);
    old.version = 1;
    ok(s.create_instances(&[old]), "create_instances");
    let taken = ok(s.fetch_work(OWNER, LONG, 10, v2), "fetch_work");
    let ids: Vec<&str> = taken.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["v1"], "an older version is taken");
    assert!(ok(s.fetch_work(OTHER, LONG, 10, v1), "fetch_work").is_empty());
    let taken = ok(
        s.fetch_work(OTHER, LONG, 10, Names(&[(O, 3)])),
        "fetch_work",
    );
    let ids: Vec<&str> = taken.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["v3"], "the build that runs it takes it");
}

/// The backlog counts what is due and not taken: messages due now, and
/// attempts due and not leased.
pub fn counts_the_backlog(s: &dyn Store) {
    assert_eq!(ok(s.backlog(), "backlog"), Backlog::default());
    create(s, "a");
    create(s, "b");
    let mut later = NewInstance::new("c", O, payload("1"), 0);
    later.visible_at = ok(s.now(), "now") + 3_600_000_000;
    ok(s.create_instances(&[later]), "create_instances");
    let backlog = ok(s.backlog(), "backlog");
    assert_eq!((backlog.messages, backlog.tasks), (2, 0));
    let seqs = seqs(s, OWNER, "a");
    let mut t = turn("a", 0, &seqs);
    t.tasks = (0..2)
        .map(|seq| NewTask::new(seq, A, payload("1"), RetryPolicy::default()))
        .collect();
    ok(s.commit_turns(OWNER, LONG, &[t]), "commit_turns");
    let backlog = ok(s.backlog(), "backlog");
    assert_eq!(
        (backlog.messages, backlog.tasks),
        (1, 2),
        "b's start, a's calls"
    );
    ok(s.fetch_tasks(OWNER, LONG, 1, ACTS), "fetch_tasks");
    assert_eq!(ok(s.backlog(), "backlog").tasks, 1, "one leased");
}

/// Generates one `#[test]` per conformance check for a store made by
/// `$make`, a closure returning `(guard, store)`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            creates_instances_once,
            counts_instances_by_status,
            counts_the_backlog,
            reads_an_instances_tasks,
            leaves_newer_versions_to_newer_builds,
            reads_a_page_of_history,
            starts_still_to_come_do_not_hide_ready_work,
            enqueues_in_sequence_and_once_per_key,
            refuses_stale_turns,
            consumes_messages_in_order,
            locks_instances_while_their_turn_runs,
            creates_instances_locked_to_their_creator,
            fetches_only_registered_names,
            leases_tasks_for_free_slots_only,
            renews_retries_and_releases_attempts,
            drops_what_a_finished_instance_had_queued,
            sets_stuck_instances_aside,
            completions_do_not_overtake_older_due_messages,
            reports_progress_and_due_times,
            keeps_the_last_custom_status,
            restarts_an_instance_afresh,
            completions_may_pass_messages_queued_after_them,
            keeps_the_lock_when_asked_and_peeks_without_taking,
            reads_everything_queued_due_or_not,
            starts_children_and_sends_messages,
            suspends_resumes_purges_and_lists,
            cancels_calls_nobody_waits_for,
            keeps_entities_apart_and_versions_their_turns,
            looks_ahead,
            a_suspend_before_the_first_commit_holds
        );
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                let (_guard, store) = ($make)();
                $crate::store::conformance::$check(&store);
            }
        )*
    };
}
