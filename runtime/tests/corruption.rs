//! Property tests of the store and its codec: any event round-trips
//! unchanged; random, truncated and corrupted rows give an error, never a
//! panic or a wrong value; any instance id or event name is either handled
//! exactly or refused with `Error::InvalidName`, and never breaks the SQL.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use durable::history::{ActivityFailure, Event, HistoryRecord, Payload};
use durable::store::{
    CommitOutcome, Created, Enqueued, Names, NewInstance, NewMessage, NewTask, SqliteOptions,
    SqliteStore, StatusUpdate, Store, Synchronous, TurnCommit,
};
use durable::{
    orchestrator, Context, Error, Failure, FailureKind, RetryPolicy, Runtime, RuntimeStatus,
    StoreError, MAX_NAME_LEN,
};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use rusqlite::types::Value;
use serde_json::Value as Json;

/// The store owner name used for locks and leases.
const OWNER: &str = "prop-owner";
/// A turn time for the turns the tests write.
const NOW: i64 = 1 << 52;
/// Locks and leases that lapse at once, so every read takes what is due.
const LAPSE: Duration = Duration::ZERO;
/// The instance every generated world is written to.
const ID: &str = "instance";

// ---------------------------------------------------------------------------
// Strategies.

/// Any string: unicode of every class (NUL, quotes, controls) included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
    ]
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_filter_map("JSON numbers are finite", |f| {
            serde_json::Number::from_f64(f).map(Json::Number)
        }),
        text().prop_map(Json::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

/// A payload, its JSON text compact or pretty (whitespace must survive too).
fn payload() -> impl Strategy<Value = Payload> {
    (json(), any::<bool>()).prop_map(|(value, pretty)| {
        let text = if pretty {
            serde_json::to_string_pretty(&value)
        } else {
            serde_json::to_string(&value)
        }
        .expect("invariant: a JSON value encodes");
        serde_json::from_str(&text).expect("invariant: encoded JSON is a payload")
    })
}

fn failure_kind() -> impl Strategy<Value = FailureKind> {
    prop_oneof![
        Just(FailureKind::Panic),
        Just(FailureKind::Nondeterminism),
        Just(FailureKind::UnregisteredActivity),
        Just(FailureKind::UnregisteredOrchestrator),
        Just(FailureKind::Payload),
        Just(FailureKind::NonDurableAwait),
        Just(FailureKind::Poisoned),
    ]
}

fn failure() -> impl Strategy<Value = Failure> {
    (failure_kind(), text()).prop_map(|(kind, message)| Failure { kind, message })
}

fn activity_failure() -> impl Strategy<Value = ActivityFailure> {
    prop_oneof![
        payload().prop_map(ActivityFailure::Error),
        text().prop_map(ActivityFailure::Panic),
        text().prop_map(ActivityFailure::Aborted),
        text().prop_map(ActivityFailure::Poisoned),
    ]
}

/// Any event, every variant, every field arbitrary.
fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (text(), payload()).prop_map(|(name, input)| Event::Started {
            name,
            input,
            seed: None,
            first_seq: 0,
            parent: None,
            version: 1,
        }),
        (any::<u64>(), text(), payload(), text()).prop_map(|(seq, name, input, site)| {
            Event::ActivityScheduled {
                seq,
                name,
                input,
                site,
            }
        }),
        (any::<u64>(), payload())
            .prop_map(|(seq, output)| Event::ActivityCompleted { seq, output }),
        (any::<u64>(), activity_failure())
            .prop_map(|(seq, failure)| Event::ActivityFailed { seq, failure }),
        (any::<u64>(), any::<i64>(), text())
            .prop_map(|(seq, fire_at, site)| { Event::TimerCreated { seq, fire_at, site } }),
        (any::<u64>(), payload(), text()).prop_map(|(seq, value, site)| Event::SideEffect {
            seq,
            value,
            site
        }),
        any::<u64>().prop_map(|seq| Event::TimerFired { seq }),
        (text(), payload()).prop_map(|(name, data)| Event::EventRaised { name, data }),
        (payload(), any::<bool>()).prop_map(|(output, failed)| Event::Completed { output, failed }),
        failure().prop_map(|failure| Event::Failed { failure }),
        text().prop_map(|reason| Event::Terminated { reason }),
        (any::<u64>(), text()).prop_map(|(seq, patch)| Event::Patched { seq, patch }),
        (any::<u64>(), payload()).prop_map(|(seq, output)| Event::EntityCompleted { seq, output }),
        (text(), payload(), proptest::option::of(text())).prop_map(|(op, input, holder)| {
            Event::Operation {
                op,
                input,
                reply_to: None,
                holder,
            }
        }),
    ]
}

/// A history as a store holds it: indexes from 0, turns never going back.
fn history() -> impl Strategy<Value = Vec<HistoryRecord>> {
    prop::collection::vec((event(), 0..3u64, any::<i64>()), 1..6).prop_map(|rows| {
        let mut turn = 0;
        rows.into_iter()
            .zip(0u64..)
            .map(|((event, step, at), index)| {
                turn += step;
                HistoryRecord {
                    index,
                    turn,
                    at,
                    event,
                }
            })
            .collect()
    })
}

fn retry_policy() -> impl Strategy<Value = RetryPolicy> {
    // Coefficients with short decimal forms: a long one does not read back
    // bit-exact (see `a_retry_policy_with_any_coefficient_reads_back_bit_exact`).
    let coefficient = prop_oneof![
        (4..400u32).prop_map(|n| f64::from(n) / 4.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
    ];
    (any::<u32>(), any::<u64>(), any::<u64>(), coefficient).prop_map(|(n, a, b, c)| {
        RetryPolicy::attempts(n)
            .backoff(Duration::from_millis(a))
            .max_backoff(Duration::from_millis(b))
            .coefficient(c)
    })
}

/// Activity calls; sequence numbers are distinct, as an instance makes them.
fn tasks() -> impl Strategy<Value = Vec<NewTask>> {
    prop::collection::btree_map(
        0..=i64::MAX.unsigned_abs(),
        (text(), payload(), retry_policy()),
        1..4,
    )
    .prop_map(|calls| {
        calls
            .into_iter()
            .map(|(seq, (name, input, retry))| NewTask::new(seq, name, input, retry))
            .collect()
    })
}

fn runtime_status() -> impl Strategy<Value = RuntimeStatus> {
    prop_oneof![
        Just(RuntimeStatus::Pending),
        Just(RuntimeStatus::Running),
        Just(RuntimeStatus::Stuck),
        Just(RuntimeStatus::Completed),
        Just(RuntimeStatus::Failed),
        Just(RuntimeStatus::Terminated),
    ]
}

/// Everything one instance can hold in every table that carries a payload.
#[derive(Debug, Clone)]
struct World {
    name: String,
    input: Payload,
    /// Events enqueued before its first turn.
    incoming: Vec<Event>,
    records: Vec<HistoryRecord>,
    tasks: Vec<NewTask>,
    /// Messages its first turn queues (due at once).
    messages: Vec<Event>,
    status: RuntimeStatus,
    output: Payload,
    failure: Option<Failure>,
    reason: Option<String>,
    created: i64,
    updated: i64,
}

fn world() -> impl Strategy<Value = World> {
    (
        (text(), payload(), prop::collection::vec(event(), 0..3)),
        (history(), tasks(), prop::collection::vec(event(), 1..3)),
        (
            runtime_status(),
            payload(),
            prop::option::of(failure()),
            prop::option::of(text()),
            any::<i64>(),
            any::<i64>(),
        ),
    )
        .prop_map(
            |(
                (name, input, incoming),
                (records, tasks, messages),
                (status, output, failure, reason, created, updated),
            )| World {
                name,
                input,
                incoming,
                records,
                tasks,
                messages,
                status,
                output,
                failure,
                reason,
                created,
                updated,
            },
        )
}

// ---------------------------------------------------------------------------
// Writing a world and reading it back.

fn store_err(e: StoreError) -> TestCaseError {
    TestCaseError::fail(format!("store call failed on intact data: {e}"))
}

/// Writes `w` through the store's own calls, checking the `Started` and
/// enqueued messages on the way.
fn write_world(store: &SqliteStore, w: &World) -> Result<(), TestCaseError> {
    let new = NewInstance::new(ID, w.name.clone(), w.input.clone(), w.created);
    let created = store.create_instances(&[new]).map_err(store_err)?;
    prop_assert!(
        matches!(created[..], [Created::Created { .. }]),
        "created: {:?}",
        created
    );
    for e in &w.incoming {
        let queued = store.enqueue(ID, e, None, false).map_err(store_err)?;
        prop_assert!(
            matches!(queued, Enqueued::Queued { message: Some(_) }),
            "queued: {:?}",
            queued
        );
    }
    let work = store
        .fetch_work(
            OWNER,
            LAPSE,
            1000,
            Names(&[(w.name.as_str(), Names::ANY_VERSION)]),
        )
        .map_err(store_err)?;
    prop_assert_eq!(work.len(), 1);
    let mut expected = vec![Event::Started {
        name: w.name.clone(),
        input: w.input.clone(),
        seed: None,
        first_seq: 0,
        parent: None,
        version: 1,
    }];
    expected.extend(w.incoming.iter().cloned());
    let got: Vec<Event> = work[0].messages.iter().map(|(_, e)| e.clone()).collect();
    prop_assert_eq!(got, expected, "queued messages read back unchanged");
    let mut turn = TurnCommit::new(ID, 0);
    turn.events = w.records.clone();
    turn.consumed = work[0].messages.iter().map(|(seq, _)| *seq).collect();
    turn.tasks = w.tasks.clone();
    turn.messages = w
        .messages
        .iter()
        .map(|event| NewMessage::new(event.clone(), 0))
        .collect();
    let mut status = StatusUpdate::new(w.status, w.updated);
    status.output = Some(w.output.clone());
    status.failure = w.failure.clone();
    status.reason = w.reason.clone();
    turn.status = Some(status);
    prop_assert_eq!(
        store
            .commit_turns(OWNER, LAPSE, &[turn])
            .map_err(store_err)?,
        vec![CommitOutcome::Committed {
            tasks: (1..=w.tasks.len() as i64).collect()
        }]
    );
    Ok(())
}

/// Whether a value read equals the one written: `Ok(())`, or what differs.
type Check = Result<(), String>;

fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: &T, want: &T) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: read {got:?}, wrote {want:?}"))
    }
}

fn time_of(us: i64) -> std::time::SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// The store's four read paths, each compared with what `w` wrote. `Err`
/// of the outer result is the store's error; the inner `Check` says whether
/// a value it returned is the one written.
struct Reads {
    history: Result<Check, StoreError>,
    status: Result<Check, StoreError>,
    work: Result<Check, StoreError>,
    tasks: Result<Check, StoreError>,
}

/// What `fetch_work` says of an instance with a damaged row or message:
/// it reports the damage (the runtime then sets the instance aside).
const DAMAGED: &str = "fetch_work reported the instance damaged";
/// What `fetch_tasks` says by leaving out a damaged task.
const SKIPPED: &str = "fetch_tasks left a task out";

fn read_back(store: &SqliteStore, w: &World) -> Reads {
    let history = store
        .history(ID)
        .map(|h| same("history", &h.unwrap_or_default(), &w.records));
    let status = store.status(ID).map(|s| {
        let Some(s) = s else {
            return Err("status: the instance is gone".to_owned());
        };
        same("status id", &s.id.as_str(), &ID)?;
        same("status name", &s.name, &w.name)?;
        same("runtime status", &s.runtime_status, &w.status)?;
        same("output", &s.output, &Some(w.output.clone()))?;
        same("failure", &s.failure, &w.failure)?;
        same("reason", &s.terminated, &w.reason)?;
        same("history length", &s.history_len, &(w.records.len() as u64))?;
        same("created at", &s.created_at, &time_of(w.created))?;
        same("updated at", &s.updated_at, &time_of(w.updated))
    });
    // A finished instance takes no messages: its turn queued none.
    let messages: Vec<&Event> = if w.status.is_finished() {
        Vec::new()
    } else {
        w.messages.iter().collect()
    };
    let work = store
        .fetch_work(
            OWNER,
            LAPSE,
            1000,
            Names(&[(w.name.as_str(), Names::ANY_VERSION)]),
        )
        .map(|work| {
            if work.is_empty() && messages.is_empty() {
                return Ok(());
            }
            let [one] = work.as_slice() else {
                return Err(format!("fetch_work: {} instances, wrote one", work.len()));
            };
            same("work instance", &one.id.as_str(), &ID)?;
            if one.damage.is_some() {
                return Err(DAMAGED.to_owned());
            }
            same("work status", &one.status, &w.status)?;
            same(
                "work history length",
                &one.history_len,
                &(w.records.len() as u64),
            )?;
            let events: Vec<&Event> = one.messages.iter().map(|(_, e)| e).collect();
            same("messages", &events, &messages)
        });
    let names: Vec<(&str, u32)> = w
        .tasks
        .iter()
        .map(|t| (t.name.as_str(), Names::ANY_VERSION))
        .collect();
    let tasks = store
        .fetch_tasks(OWNER, LAPSE, 1000, Names(&names))
        .map(|tasks| {
            let got: Vec<_> = tasks
                .iter()
                .map(|t| (t.instance.as_str(), t.seq, &t.name, &t.input, t.retry))
                .collect();
            let want: Vec<_> = w
                .tasks
                .iter()
                .map(|t| (ID, t.seq, &t.name, &t.input, t.retry))
                .collect();
            if got.len() < want.len() && got.iter().all(|t| want.contains(t)) {
                return Err(SKIPPED.to_owned());
            }
            same("tasks", &got, &want)
        });
    Reads {
        history,
        status,
        work,
        tasks,
    }
}

/// `cases` cases; failures are printed, not saved next to the source.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

fn memory_store() -> SqliteStore {
    SqliteStore::open(":memory:").expect("an in-memory store opens")
}

/// Commits one activity call with `retry` and leases it back.
fn task_round_trip(retry: RetryPolicy) -> RetryPolicy {
    let store = memory_store();
    let new = NewInstance::new(
        ID,
        "orchestrator",
        serde_json::from_str("null").expect("null is a payload"),
        0,
    );
    store.create_instances(&[new]).expect("create");
    let work = store
        .fetch_work(
            OWNER,
            LAPSE,
            10,
            Names(&[("orchestrator", Names::ANY_VERSION)]),
        )
        .expect("fetch_work");
    let mut turn = TurnCommit::new(ID, 0);
    turn.consumed = work[0].messages.iter().map(|(seq, _)| *seq).collect();
    turn.tasks = vec![NewTask::new(
        0,
        "activity",
        serde_json::from_str("1").expect("1 is a payload"),
        retry,
    )];
    store.commit_turns(OWNER, LAPSE, &[turn]).expect("commit");
    let tasks = store
        .fetch_tasks(OWNER, LAPSE, 10, Names(&[("activity", Names::ANY_VERSION)]))
        .expect("fetch_tasks");
    tasks[0].retry
}

/// A long coefficient loses its last bit through the store: serde_json
/// parses floats best-effort unless its `float_roundtrip` feature is on.
#[test]
fn a_retry_policy_with_any_coefficient_reads_back_bit_exact() {
    let policy = RetryPolicy::attempts(3).coefficient(f64::from_bits(0x7591_1088_d092_aa51));
    assert_eq!(task_round_trip(policy), policy);
    let policy = RetryPolicy::attempts(3).coefficient(1.1);
    assert_eq!(task_round_trip(policy), policy);
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn every_event_and_row_written_reads_back_unchanged(w in world()) {
        let store = memory_store();
        write_world(&store, &w)?;
        let reads = read_back(&store, &w);
        for (what, read) in [
            ("history", reads.history),
            ("status", reads.status),
            ("fetch_work", reads.work),
            ("fetch_tasks", reads.tasks),
        ] {
            match read {
                Ok(Ok(())) => {}
                Ok(Err(diff)) => return Err(TestCaseError::fail(diff)),
                Err(e) => return Err(TestCaseError::fail(format!("{what}: {e}"))),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Corruption written straight into the file.

/// A payload column that can be damaged, and the row to damage (an index
/// into that table's rows of the instance, wrapped).
#[derive(Debug, Clone, Copy)]
enum Column {
    HistoryEvent,
    MessageEvent,
    TaskInput,
    TaskRetry,
    InstanceOutput,
    InstanceStatus,
    InstanceHistoryLen,
    InstanceAttempts,
}

impl Column {
    /// The table, its payload column, and the key that picks one row.
    fn place(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::HistoryEvent => ("history", "event", "idx"),
            Self::MessageEvent => ("messages", "event", "seq"),
            Self::TaskInput => ("tasks", "input", "id"),
            Self::TaskRetry => ("tasks", "retry", "id"),
            Self::InstanceOutput => ("instances", "output", "id"),
            Self::InstanceStatus => ("instances", "status", "id"),
            Self::InstanceHistoryLen => ("instances", "history_len", "id"),
            Self::InstanceAttempts => ("instances", "attempts", "id"),
        }
    }
}

/// How a column's bytes are damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Replaced by random bytes.
    Random(Vec<u8>),
    /// Cut to a shorter length (the number is wrapped to the length).
    Truncate(usize),
    /// One byte XORed with a non-zero mask.
    Flip(usize, u8),
    /// Set to NULL (only nullable columns).
    Null,
}

/// How the damaged bytes are stored: as TEXT (valid UTF-8 or not) or a BLOB.
#[derive(Debug, Clone, Copy)]
enum Storage {
    Text,
    Blob,
}

fn column() -> impl Strategy<Value = Column> {
    prop_oneof![
        Just(Column::HistoryEvent),
        Just(Column::MessageEvent),
        Just(Column::TaskInput),
        Just(Column::TaskRetry),
        Just(Column::InstanceOutput),
        Just(Column::InstanceStatus),
        Just(Column::InstanceHistoryLen),
        Just(Column::InstanceAttempts),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48).prop_map(Damage::Random),
        // Valid UTF-8 that may even be JSON: only the checksum catches it.
        prop_oneof![text(), json().prop_map(|j| j.to_string())]
            .prop_map(|s| Damage::Random(s.into_bytes())),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), 1..=u8::MAX).prop_map(|(at, mask)| Damage::Flip(at, mask)),
        Just(Damage::Null),
    ]
}

fn storage() -> impl Strategy<Value = Storage> {
    prop_oneof![3 => Just(Storage::Text), 1 => Just(Storage::Blob)]
}

/// Any SQLite value for a garbage row's column.
fn sql_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        any::<f64>()
            .prop_filter("SQLite stores no NaN", |f| !f.is_nan())
            .prop_map(Value::Real),
        text().prop_map(Value::Text),
        json().prop_map(|j| Value::Text(j.to_string())),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(Value::Blob),
    ]
}

/// A row of random values added to (or replacing one in) a table.
#[derive(Debug, Clone)]
enum Garbage {
    /// A history row of the instance.
    History(Vec<Value>),
    /// A due message for the instance.
    Message(Vec<Value>),
    /// A due task of the instance.
    Task(Vec<Value>),
    /// An instance row under its own id.
    Instance(String, Vec<Value>),
}

fn garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        prop::collection::vec(sql_value(), 5).prop_map(Garbage::History),
        prop::collection::vec(sql_value(), 3).prop_map(Garbage::Message),
        prop::collection::vec(sql_value(), 7).prop_map(Garbage::Task),
        ("[a-z]{1,8}", prop::collection::vec(sql_value(), 11))
            .prop_map(|(id, v)| Garbage::Instance(format!("garbage-{id}"), v)),
    ]
}

#[derive(Debug, Clone)]
enum Harm {
    Damage(Column, usize, Damage, Storage),
    Garbage(Garbage),
}

fn harm() -> impl Strategy<Value = Harm> {
    prop_oneof![
        3 => (column(), any::<usize>(), damage(), storage())
            .prop_map(|(c, row, d, s)| Harm::Damage(c, row, d, s)),
        1 => garbage().prop_map(Harm::Garbage),
    ]
}

/// Which read must see the harm (the others must still read intact data).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Victim {
    History,
    Status(String),
    Work,
    Tasks,
    /// An integer or status column of the instance: its status and its
    /// fetch both see it.
    Instance,
}

/// Applies `harm` with a separate connection; `None` when it changed
/// nothing (a NULL written into a NOT NULL column is refused by SQLite).
fn apply(path: &Path, harm: &Harm) -> rusqlite::Result<Option<(Victim, bool)>> {
    let conn = rusqlite::Connection::open(path)?;
    match harm {
        Harm::Damage(col, row, damage, storage) => {
            let (table, column, key) = col.place();
            let keys: Vec<(Value, Vec<u8>)> = conn
                .prepare(&format!(
                    "SELECT {key}, CAST({column} AS BLOB) FROM {table} \
                     WHERE {} = ?1 ORDER BY {key}",
                    if table == "instances" {
                        "id"
                    } else {
                        "instance"
                    }
                ))?
                .query_map([ID], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            // A finished instance keeps no messages: nothing to damage.
            if keys.is_empty() {
                return Ok(None);
            }
            let (row_key, old) = &keys[row % keys.len()];
            let new: Option<Vec<u8>> = match damage {
                Damage::Random(bytes) => Some(bytes.clone()),
                Damage::Truncate(n) => Some(old[..n % old.len().max(1)].to_vec()),
                Damage::Flip(at, mask) => {
                    let mut b = old.clone();
                    let i = at % b.len().max(1);
                    if let Some(byte) = b.get_mut(i) {
                        *byte ^= mask;
                    }
                    Some(b)
                }
                Damage::Null => None,
            };
            if new.as_ref() == Some(old) {
                return Ok(None);
            }
            let nullable = column == "output";
            if new.is_none() && !nullable {
                return Ok(None);
            }
            let as_text = matches!(storage, Storage::Text);
            let sql = format!(
                "UPDATE {table} SET {column} = {} WHERE {key} = ?1 AND {} = ?3",
                if as_text { "CAST(?2 AS TEXT)" } else { "?2" },
                if table == "instances" {
                    "id"
                } else {
                    "instance"
                }
            );
            let n = conn.execute(&sql, rusqlite::params![row_key, new, ID])?;
            assert_eq!(n, 1, "invariant: the picked row exists");
            // Only valid UTF-8 text is read as a string; it then must fail
            // on its checksum, as `Corrupt`.
            let checksum_only = match &new {
                None => true,
                Some(b) => as_text && std::str::from_utf8(b).is_ok(),
            };
            let victim = match col {
                Column::HistoryEvent => Victim::History,
                Column::MessageEvent => Victim::Work,
                Column::TaskInput | Column::TaskRetry => Victim::Tasks,
                // The instance row is read (and checksummed) by the status
                // and by the fetch of its messages.
                Column::InstanceOutput | Column::InstanceStatus | Column::InstanceHistoryLen => {
                    Victim::Instance
                }
                Column::InstanceAttempts => Victim::Work,
            };
            Ok(Some((victim, checksum_only)))
        }
        Harm::Garbage(g) => {
            let victim = match g {
                Garbage::History(v) => {
                    conn.execute(
                        "INSERT OR REPLACE INTO history (instance, idx, turn, at, event, sum) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        rusqlite::params![ID, v[0], v[1], v[2], v[3], v[4]],
                    )?;
                    Victim::History
                }
                Garbage::Message(v) => {
                    conn.execute(
                        "INSERT OR REPLACE INTO messages (instance, seq, visible_at, event, sum) \
                         VALUES (?1, ?2, 0, ?3, ?4)",
                        rusqlite::params![ID, v[2], v[0], v[1]],
                    )?;
                    Victim::Work
                }
                Garbage::Task(v) => {
                    conn.execute(
                        "INSERT OR REPLACE INTO tasks \
                         (instance, seq, name, input, retry, attempt, failures, visible_at, sum) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)",
                        rusqlite::params![ID, v[0], v[1], v[2], v[3], v[4], v[5], v[6]],
                    )?;
                    Victim::Tasks
                }
                Garbage::Instance(id, v) => {
                    conn.execute(
                        "INSERT INTO instances (id, name, status, output, failure, reason, \
                         created_at, updated_at, history_len, attempts, lock_owner, sum) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                        rusqlite::params![
                            id, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10]
                        ],
                    )?;
                    Victim::Status(id.clone())
                }
            };
            Ok(Some((victim, false)))
        }
    }
}

/// A store on a fresh file, fast to write: durability is not under test.
fn file_store(path: &Path) -> SqliteStore {
    let mut options = SqliteOptions::default();
    options.synchronous = Synchronous::Normal;
    SqliteStore::open_with(path, &options).expect("a fresh store opens")
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn damaged_or_garbage_rows_are_errors_never_panics_or_wrong_values(
        w in world(),
        harm in harm(),
    ) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("durable.db");
        let store = file_store(&path);
        write_world(&store, &w)?;
        let applied = apply(&path, &harm)
            .map_err(|e| TestCaseError::fail(format!("damaging the file: {e}")))?;
        let Some((victim, checksum_only)) = applied else {
            return Err(TestCaseError::reject("the damage changed nothing"));
        };
        // A garbage instance row is read by its own id.
        let garbage_status = match &victim {
            Victim::Status(id) if id != ID => Some(store.status(id)),
            _ => None,
        };
        let reads = read_back(&store, &w);
        let hit = |v: Victim| v == victim;
        let instance = hit(Victim::Instance);
        for (what, is_victim, read) in [
            ("history", hit(Victim::History), reads.history),
            ("status", instance || hit(Victim::Status(ID.to_owned())), reads.status),
            ("fetch_work", instance || hit(Victim::Work), reads.work),
            ("fetch_tasks", hit(Victim::Tasks), reads.tasks),
        ] {
            match read {
                // The queue reads isolate damage: they leave a damaged or
                // garbage row out and return the intact rest, exactly.
                Ok(Ok(())) if is_victim && matches!(what, "fetch_work" | "fetch_tasks") => {}
                // A damaged attempt count is only a count: it may read as
                // another number, never stop the instance.
                Ok(Err(_)) if matches!(harm, Harm::Damage(Column::InstanceAttempts, ..)) => {}
                Ok(Ok(())) if is_victim => {
                    return Err(TestCaseError::fail(format!(
                        "{what} read the damaged row as if it were intact"
                    )));
                }
                Ok(Ok(())) => {}
                // Damage isolated: a damaged task is left out, a damaged
                // instance is reported as such (the runtime sets it aside).
                Ok(Err(diff)) if is_victim && (diff == SKIPPED || diff == DAMAGED) => {}
                Ok(Err(diff)) => {
                    return Err(TestCaseError::fail(format!("{what} returned a wrong value: {diff}")));
                }
                Err(e) if !is_victim => {
                    return Err(TestCaseError::fail(format!(
                        "{what} failed though its rows are intact: {e}"
                    )));
                }
                Err(StoreError::Corrupt { .. }) => {}
                Err(e) if checksum_only => {
                    return Err(TestCaseError::fail(format!(
                        "{what}: a row failing its checksum gave {e:?}, not StoreError::Corrupt"
                    )));
                }
                Err(_) => {}
            }
        }
        if let Some(read) = garbage_status {
            prop_assert!(read.is_err(), "a garbage instance row reads as {read:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Hostile instance ids and event names, through the client.

#[orchestrator]
async fn echo_event(ctx: Context, name: String) -> (String, String) {
    let data: String = ctx.wait_event(name).await;
    (ctx.instance_id().to_owned(), data)
}

/// Names a user might pass: any text, SQL and quoting fragments, empty,
/// at and just past the length limit, and long strings of any characters.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => text(),
        1 => prop::sample::select(vec![
            String::new(),
            "'".to_owned(),
            "\"".to_owned(),
            "\0".to_owned(),
            "a\0b".to_owned(),
            "%_".to_owned(),
            "'; DROP TABLE instances; --".to_owned(),
            "\" OR 1=1 --".to_owned(),
            "x".repeat(MAX_NAME_LEN),
            "x".repeat(MAX_NAME_LEN + 1),
            "é".repeat(MAX_NAME_LEN / 2),
            "é".repeat(MAX_NAME_LEN / 2 + 1),
        ]),
        1 => prop::collection::vec(any::<char>(), 200..1200).prop_map(String::from_iter),
    ]
}

fn must_refuse(name: &str) -> bool {
    // Control characters and the invisible ones that reorder or hide text.
    let hostile = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(hostile)
}

async fn ids_and_names_case(id: String, name: String, data: String) -> Result<(), TestCaseError> {
    let rt = Runtime::builder()
        .sqlite(":memory:")
        .poll_interval(Duration::from_millis(10))
        .orchestrator(echo_event)
        .start()
        .await
        .map_err(|e| TestCaseError::fail(format!("the runtime did not start: {e}")))?;
    let client = rt.client();
    let result = async {
        let missing = client.status(&id).await;
        prop_assert!(
            matches!(missing, Err(Error::InstanceNotFound { id: ref got }) if *got == id),
            "an unknown id is not found: {missing:?}"
        );
        let h = match client
            .start_with_id(echo_event, id.clone(), name.clone())
            .await
        {
            Ok(h) => h,
            Err(Error::InvalidName { .. }) => {
                let after = client.status(&id).await;
                prop_assert!(
                    matches!(after, Err(Error::InstanceNotFound { .. })),
                    "a refused id left something behind: {after:?}"
                );
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("start: {e}"))),
        };
        prop_assert!(
            !must_refuse(&id),
            "an id of {} bytes was accepted",
            id.len()
        );
        prop_assert_eq!(&client.status(&id).await.map_err(fail)?.id, &id);
        match client.raise_event(&id, &name, &data).await {
            Ok(()) => {}
            Err(Error::InvalidName { .. }) => {
                client
                    .terminate(&id, "the event name was refused")
                    .await
                    .map_err(fail)?;
                let st = tokio::time::timeout(Duration::from_secs(20), client.wait(&id))
                    .await
                    .map_err(|_| TestCaseError::fail("terminate was not applied in time"))?
                    .map_err(fail)?;
                prop_assert_eq!(st.runtime_status, RuntimeStatus::Terminated);
                let history = client.history(&id).await.map_err(fail)?;
                prop_assert!(
                    !history
                        .iter()
                        .any(|r| matches!(r.event, Event::EventRaised { .. })),
                    "a refused event was delivered"
                );
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("raise_event: {e}"))),
        }
        prop_assert!(
            !must_refuse(&name),
            "an event name of {} bytes was accepted",
            name.len()
        );
        let out = tokio::time::timeout(Duration::from_secs(20), h.result())
            .await
            .map_err(|_| TestCaseError::fail("the instance did not finish in time"))?
            .map_err(fail)?;
        prop_assert_eq!(out, (id.clone(), data.clone()));
        let history = client.history(&id).await.map_err(fail)?;
        let raised: Vec<(&String, &str)> = history
            .iter()
            .filter_map(|r| match &r.event {
                Event::EventRaised { name, data } => Some((name, data.json())),
                _ => None,
            })
            .collect();
        let want = serde_json::to_string(&data).map_err(fail)?;
        prop_assert_eq!(raised, vec![(&name, want.as_str())]);
        Ok(())
    }
    .await;
    rt.shutdown().await.map_err(fail)?;
    result
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn any_instance_id_or_event_name_round_trips_or_is_refused_as_invalid(
        id in name(),
        event in name(),
        data in text(),
    ) {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        tokio.block_on(ids_and_names_case(id, event, data))?;
    }
}

/// A history row's place and time are checked too: a damaged `turn` or
/// `at` would regroup turns or change `ctx.now()` on replay.
#[test]
fn a_damaged_turn_or_time_in_history_is_an_error() {
    for column in ["turn", "at", "idx"] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("durable.db");
        let store = file_store(&path);
        let new = NewInstance::new(ID, "o", serde_json::from_str("1").expect("a payload"), 0);
        store.create_instances(&[new]).expect("created");
        let work = store
            .fetch_work(OWNER, LAPSE, 10, Names(&[("o", Names::ANY_VERSION)]))
            .expect("fetched");
        let mut turn = TurnCommit::new(ID, 0);
        turn.events = vec![HistoryRecord {
            index: 0,
            turn: 0,
            at: 5,
            event: Event::Started {
                name: "o".to_owned(),
                input: serde_json::from_str("1").expect("a payload"),
                seed: None,
                first_seq: 0,
                parent: None,
                version: 1,
            },
        }];
        turn.consumed = work[0].messages.iter().map(|(seq, _)| *seq).collect();
        turn.status = Some(StatusUpdate::new(RuntimeStatus::Running, NOW));
        store
            .commit_turns(OWNER, LAPSE, &[turn])
            .expect("committed");
        assert_eq!(store.history(ID).expect("intact").expect("exists").len(), 1);
        let conn = rusqlite::Connection::open(&path).expect("opens");
        conn.execute(&format!("UPDATE history SET {column} = {column} + 1"), [])
            .expect("damaged");
        let err = store.history(ID).expect_err("a damaged row is an error");
        assert!(
            matches!(err, StoreError::Corrupt { .. }),
            "{column}: {err:?}"
        );
    }
}
