//! Replay-engine tests on hand-built histories: no database, no runtime.

use std::time::Duration;

use super::*;
use crate::activity::{Activity, BoxFuture, Never};
use crate::combinator::{join_all, select, Either};
use crate::history::ActivityFailure;
use crate::orchestrator::Orchestrator;

#[derive(Clone, Copy)]
struct AddOne;
impl Activity for AddOne {
    type Input = u64;
    type Output = u64;
    type Error = Never;
    const NAME: &'static str = "add_one";
    fn invoke(self, x: u64) -> BoxFuture<Result<u64, Never>> {
        Box::pin(async move { Ok(x + 1) })
    }
}

#[derive(Clone, Copy)]
struct Fallible;
impl Activity for Fallible {
    type Input = u64;
    type Output = u64;
    type Error = String;
    const NAME: &'static str = "fallible";
    fn invoke(self, x: u64) -> BoxFuture<Result<u64, String>> {
        Box::pin(async move { Err(format!("{x} refused")) })
    }
}

/// Defines an orchestrator from a body, as the macro would.
macro_rules! orchestrator {
    ($name:ident ($ctx:ident, $x:ident: $in:ty) -> $out:ty $body:block) => {
        #[derive(Clone, Copy)]
        struct $name;
        impl Orchestrator for $name {
            type Input = $in;
            type Output = $out;
            const NAME: &'static str = stringify!($name);
            #[allow(unused_variables)]
            fn invoke(self, $ctx: Context, $x: $in) -> BoxFuture<$out> {
                Box::pin(async move $body)
            }
            fn is_failure(output: &$out) -> bool {
                #[allow(unused_imports)]
                use crate::__private::{ResultFailure as _, ValueFailure as _};
                (&crate::__private::IsFailure(output)).is_failure()
            }
        }
    };
}

orchestrator!(Chain(ctx, x: u64) -> u64 {
    let a = ctx.call(AddOne, x).await.unwrap_or(0);
    let b = ctx.call(AddOne, a).await.unwrap_or(0);
    a + b
});

orchestrator!(ChainTimer(ctx, x: u64) -> u64 {
    ctx.sleep(Duration::from_secs(1)).await;
    ctx.call(AddOne, x).await.unwrap_or(0)
});

orchestrator!(Race(ctx, x: u64) -> String {
    match select(ctx.wait_event::<String>("go"), ctx.sleep(Duration::from_secs(60))).await {
        Either::Left(s) => s,
        Either::Right(()) => "timeout".to_owned(),
    }
});

orchestrator!(Fan(ctx, n: u64) -> Vec<u64> {
    join_all((0..n).map(|i| ctx.call(AddOne, i)))
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .collect()
});

orchestrator!(Events(ctx, x: u64) -> Vec<u64> {
    let a: u64 = ctx.wait_event("e").await;
    let b: u64 = ctx.wait_event("e").await;
    vec![a, b]
});

orchestrator!(Fails(ctx, x: u64) -> Result<u64, String> {
    ctx.call(Fallible, x).await.map_err(|e| e.to_string())
});

orchestrator!(Panics(ctx, x: u64) -> u64 {
    let v = ctx.call(AddOne, x).await.unwrap_or(0);
    assert!(v > 100, "value {v} is too small");
    v
});

orchestrator!(Foreign(ctx, x: u64) -> u64 {
    let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
    std::mem::forget(tx);
    rx.await.unwrap_or(x)
});

thread_local! {
    /// Side-effect runs on this thread: tests run in parallel, each on its
    /// own thread, and the code of a turn runs on the thread that runs it.
    static EFFECTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

orchestrator!(Effects(ctx, x: u64) -> (u64, u64, String, u64) {
    let effect = ctx.side_effect(|| {
        EFFECTS.with(|n| {
            n.set(n.get() + 1);
            n.get() + 999
        })
    });
    let r = ctx.random();
    let id = ctx.uuid();
    let after = ctx.call(AddOne, x).await.unwrap_or(0);
    (effect, r, id, after)
});

fn registry() -> Registry {
    let mut r = Registry::default();
    r.add_activity(AddOne);
    r.add_activity(Fallible);
    r.add_orchestrator(Chain);
    r.add_orchestrator(ChainTimer);
    r.add_orchestrator(Race);
    r.add_orchestrator(Fan);
    r.add_orchestrator(Events);
    r.add_orchestrator(Fails);
    r.add_orchestrator(Panics);
    r.add_orchestrator(Foreign);
    r.add_orchestrator(Effects);
    r
}

fn json<T: serde::Serialize>(v: &T) -> Payload {
    Payload::encode(v, "test value", usize::MAX).expect("test values encode")
}

fn started(name: &str, input: u64) -> Event {
    Event::Started {
        name: name.to_owned(),
        input: json(&input),
        seed: None,
        first_seq: 0,
        parent: None,
        version: 1,
    }
}

fn completed(seq: u64, v: u64) -> Event {
    Event::ActivityCompleted {
        seq,
        output: json(&v),
    }
}

fn scheduled(seq: u64, name: &str, input: u64, site: &str) -> Event {
    Event::ActivityScheduled {
        seq,
        name: name.to_owned(),
        input: json(&input),
        site: site.to_owned(),
    }
}

/// Builds a history from turns of events, numbering them.
fn history(turns: Vec<Vec<Event>>) -> Vec<HistoryRecord> {
    let mut out = Vec::new();
    for (turn, events) in turns.into_iter().enumerate() {
        for event in events {
            out.push(HistoryRecord {
                index: out.len() as u64,
                turn: turn as u64,
                at: 1_000 * turn as i64,
                event,
            });
        }
    }
    out
}

/// Runs the turns live, returning the execution and the history it wrote.
fn live(id: &str, turns: Vec<Vec<Event>>) -> (Execution, Vec<HistoryRecord>, Option<Outcome>) {
    let reg = registry();
    let mut ex = Execution::new(id);
    let mut hist = Vec::new();
    let mut outcome = None;
    for (i, incoming) in turns.into_iter().enumerate() {
        let turn = ex
            .run_turn(1_000 * i as i64, incoming, &reg)
            .expect("registered");
        hist.extend(turn.events);
        outcome = turn.outcome;
    }
    (ex, hist, outcome)
}

fn decisions(hist: &[HistoryRecord]) -> Vec<&Event> {
    hist.iter()
        .map(|r| &r.event)
        .filter(|e| e.is_decision())
        .collect()
}

#[test]
fn a_chain_runs_live_and_records_each_step_in_its_turn() {
    let (ex, hist, outcome) = live(
        "i",
        vec![
            vec![started("Chain", 1)],
            vec![completed(0, 2)],
            vec![completed(1, 3)],
        ],
    );
    assert_eq!(
        outcome,
        Some(Outcome::Completed {
            output: json(&5u64),
            failed: false
        })
    );
    assert!(ex.finished);
    let turns: Vec<u64> = hist.iter().map(|r| r.turn).collect();
    assert_eq!(turns, vec![0, 0, 1, 1, 2, 2]);
    let indexes: Vec<u64> = hist.iter().map(|r| r.index).collect();
    assert_eq!(indexes, (0..6).collect::<Vec<_>>());
    assert!(matches!(
        hist[1].event,
        Event::ActivityScheduled { seq: 0, .. }
    ));
    assert!(matches!(
        hist[3].event,
        Event::ActivityScheduled { seq: 1, .. }
    ));
}

#[test]
fn replay_resumes_where_history_ends_without_scheduling_again() {
    let (_, hist, _) = live("i", vec![vec![started("Chain", 1)], vec![completed(0, 2)]]);
    let mut ex = Execution::replay("i", &hist, &registry()).expect("history fits the code");
    assert_eq!(ex.history_len, 4);
    assert_eq!(ex.next_turn, 2);
    let turn = ex
        .run_turn(5_000, vec![completed(1, 3)], &registry())
        .expect("registered");
    assert!(turn.actions.is_empty(), "nothing new is scheduled");
    assert_eq!(turn.events[0].index, 4);
    assert_eq!(
        turn.outcome,
        Some(Outcome::Completed {
            output: json(&5u64),
            failed: false
        })
    );
}

#[test]
fn replay_of_a_changed_call_is_nondeterminism_naming_both_sites() {
    let hist = history(vec![vec![
        started("Chain", 1),
        scheduled(0, "fallible", 1, "src/old.rs:10:5"),
    ]]);
    let Err(Parked(f)) = Execution::replay("i", &hist, &registry()) else {
        panic!("a changed call must not replay");
    };
    assert_eq!(f.kind, FailureKind::Nondeterminism);
    assert!(f.message.contains("`fallible`"), "{}", f.message);
    assert!(f.message.contains("src/old.rs:10:5"), "{}", f.message);
    assert!(f.message.contains("`add_one`"), "{}", f.message);
    assert!(
        f.message.contains("tests.rs"),
        "names the new site: {}",
        f.message
    );
}

#[test]
fn replay_of_a_removed_call_is_nondeterminism() {
    // History has a timer the code (ChainTimer without its sleep) no longer makes.
    let hist = history(vec![vec![
        started("Chain", 1),
        scheduled(0, "add_one", 1, "a.rs:1:1"),
        Event::TimerCreated {
            seq: 1,
            fire_at: 10,
            site: "a.rs:2:1".to_owned(),
        },
    ]]);
    let Err(Parked(f)) = Execution::replay("i", &hist, &registry()) else {
        panic!("a removed call must not replay");
    };
    assert_eq!(f.kind, FailureKind::Nondeterminism);
    assert!(f.message.contains("no longer makes"), "{}", f.message);
}

#[test]
fn replay_of_an_added_call_is_nondeterminism() {
    // History of ChainTimer's first turn, but the code now calls an activity first.
    let hist = history(vec![
        vec![
            started("Chain", 1),
            Event::TimerCreated {
                seq: 0,
                fire_at: 10,
                site: "a.rs:2:1".to_owned(),
            },
        ],
        vec![Event::TimerFired { seq: 0 }],
    ]);
    let Err(Parked(f)) = Execution::replay("i", &hist, &registry()) else {
        panic!("an added call must not replay");
    };
    assert_eq!(f.kind, FailureKind::Nondeterminism);
}

#[test]
fn an_unregistered_orchestrator_parks_instead_of_failing() {
    let hist = history(vec![vec![started("Nobody", 1)]]);
    let Err(Parked(f)) = Execution::replay("i", &hist, &registry()) else {
        panic!("unknown orchestrator");
    };
    assert_eq!(f.kind, FailureKind::UnregisteredOrchestrator);
}

#[test]
fn a_race_decided_in_one_turn_picks_the_same_winner_on_replay() {
    let go = Event::EventRaised {
        name: "go".to_owned(),
        data: json(&"event"),
    };
    // The timer (seq 0) and the event arrive in the same turn: the event,
    // the first future of the select, wins.
    let (_, hist, outcome) = live(
        "i",
        vec![
            vec![started("Race", 0)],
            vec![Event::TimerFired { seq: 0 }, go.clone()],
        ],
    );
    let want = Some(Outcome::Completed {
        output: json(&"event"),
        failed: false,
    });
    assert_eq!(outcome, want);
    // Replaying the history up to the deciding turn, then delivering it
    // again, gives the same winner.
    let first_turn: Vec<_> = hist.iter().filter(|r| r.turn == 0).cloned().collect();
    let mut ex = Execution::replay("i", &first_turn, &registry()).expect("fits");
    let turn = ex
        .run_turn(9_000, vec![Event::TimerFired { seq: 0 }, go], &registry())
        .expect("registered");
    assert_eq!(turn.outcome, want);
    // With the timer alone in a turn, the timer wins.
    let (_, _, outcome) = live(
        "i",
        vec![vec![started("Race", 0)], vec![Event::TimerFired { seq: 0 }]],
    );
    assert_eq!(
        outcome,
        Some(Outcome::Completed {
            output: json(&"timeout"),
            failed: false
        })
    );
}

#[test]
fn join_all_returns_results_in_call_order_whatever_the_completion_order() {
    let (ex, hist, outcome) = live(
        "i",
        vec![
            vec![started("Fan", 3)],
            vec![completed(2, 30)],
            vec![completed(0, 10), completed(1, 20)],
        ],
    );
    assert_eq!(decisions(&hist).len(), 4, "three calls and the completion");
    assert_eq!(
        outcome,
        Some(Outcome::Completed {
            output: json(&vec![10u64, 20, 30]),
            failed: false
        })
    );
    assert!(ex.finished);
}

#[test]
fn events_raised_before_the_wait_are_kept_in_order() {
    let e = |v: u64| Event::EventRaised {
        name: "e".to_owned(),
        data: json(&v),
    };
    let (_, _, outcome) = live("i", vec![vec![started("Events", 0), e(7), e(8)]]);
    assert_eq!(
        outcome,
        Some(Outcome::Completed {
            output: json(&vec![7u64, 8]),
            failed: false
        })
    );
}

#[test]
fn an_activity_error_reaches_the_orchestrator_typed() {
    let (_, _, outcome) = live(
        "i",
        vec![
            vec![started("Fails", 4)],
            vec![Event::ActivityFailed {
                seq: 0,
                failure: ActivityFailure::Error(json(&"4 refused")),
            }],
        ],
    );
    assert_eq!(
        outcome,
        Some(Outcome::Completed {
            output: json(&Err::<u64, String>("4 refused".to_owned())),
            failed: true
        })
    );
}

#[test]
fn a_panicking_orchestrator_fails_with_the_message() {
    let (_, _, outcome) = live("i", vec![vec![started("Panics", 1)], vec![completed(0, 2)]]);
    let Some(Outcome::Failed(f)) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_eq!(f.kind, FailureKind::Panic);
    assert!(f.message.contains("value 2 is too small"), "{}", f.message);
}

#[test]
fn awaiting_a_foreign_future_fails_instead_of_hanging() {
    let (_, _, outcome) = live("i", vec![vec![started("Foreign", 1)]]);
    let Some(Outcome::Failed(f)) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_eq!(f.kind, FailureKind::NonDurableAwait);
}

#[test]
fn a_payload_of_the_wrong_type_fails_the_instance() {
    let (_, _, outcome) = live(
        "i",
        vec![vec![
            started("Events", 0),
            Event::EventRaised {
                name: "e".to_owned(),
                data: json(&"not a number"),
            },
        ]],
    );
    let Some(Outcome::Failed(f)) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_eq!(f.kind, FailureKind::Payload);
}

#[test]
fn turn_time_is_recorded_and_never_goes_backwards() {
    let reg = registry();
    let mut ex = Execution::new("i");
    let t0 = ex
        .run_turn(5_000, vec![started("ChainTimer", 1)], &reg)
        .expect("ok");
    assert_eq!(t0.events[0].at, 5_000);
    let Event::TimerCreated { fire_at, .. } = t0.events[1].event else {
        panic!("a timer first");
    };
    assert_eq!(
        fire_at,
        5_000 + 1_000_000,
        "one second after the turn's time"
    );
    let t1 = ex
        .run_turn(1_000, vec![Event::TimerFired { seq: 0 }], &reg)
        .expect("ok");
    assert_eq!(
        t1.events[0].at, 5_000,
        "a clock that went back is not followed"
    );
}

#[test]
fn a_terminated_instance_ends_and_records_later_messages_undelivered() {
    let (ex, hist, outcome) = live(
        "i",
        vec![vec![
            started("Chain", 1),
            Event::Terminated {
                reason: "stop".to_owned(),
            },
            completed(0, 2),
        ]],
    );
    assert_eq!(outcome, Some(Outcome::Terminated("stop".to_owned())));
    assert!(ex.finished);
    // What came with the termination is recorded, never delivered, and the
    // history ends with the termination.
    let events: Vec<&Event> = hist.iter().map(|r| &r.event).collect();
    assert!(
        matches!(
            events[..],
            [
                Event::Started { .. },
                Event::ActivityCompleted { .. },
                Event::Terminated { .. }
            ]
        ),
        "{hist:?}"
    );
}

#[test]
fn side_effects_random_numbers_and_ids_replay_to_the_same_values() {
    let reg = registry();
    let mut first = Execution::new("effects");
    let t0 = first
        .run_turn(0, vec![started("Effects", 1)], &reg)
        .expect("ok");
    let runs_after_first = EFFECTS.with(std::cell::Cell::get);
    let Some(Event::SideEffect { value, .. }) = t0
        .events
        .iter()
        .map(|r| &r.event)
        .find(|e| matches!(e, Event::SideEffect { .. }))
    else {
        panic!("the side effect is recorded: {:?}", t0.events);
    };
    let recorded: u64 = value.decode("test").expect("a number");
    let live = first
        .run_turn(1, vec![completed(1, 2)], &reg)
        .expect("ok")
        .outcome;

    let mut again = Execution::replay("effects", &t0.events, &reg).expect("fits");
    assert_eq!(
        EFFECTS.with(std::cell::Cell::get),
        runs_after_first,
        "replay does not run the side effect again"
    );
    let replayed = again
        .run_turn(1, vec![completed(1, 2)], &reg)
        .expect("ok")
        .outcome;
    assert_eq!(live, replayed);
    let Some(Outcome::Completed { output, .. }) = replayed else {
        panic!("completed");
    };
    let (effect, _, id, after): (u64, u64, String, u64) = output.decode("test").expect("decodes");
    assert_eq!(effect, recorded);
    assert_eq!(after, 2);
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "a version-4 UUID: {id}");
}

#[test]
fn different_instances_draw_different_random_numbers() {
    let reg = registry();
    let out = |id: &str| {
        let mut ex = Execution::new(id);
        ex.run_turn(0, vec![started("Effects", 1)], &reg)
            .expect("ok");
        ex.run_turn(1, vec![completed(1, 2)], &reg)
            .expect("ok")
            .outcome
    };
    assert_ne!(out("a"), out("b"));
}

/// Regression: random numbers depended on the instance id alone, so
/// `dice-1` drew the same UUID in every database. The seed recorded in
/// `Started` decides, and replays the same.
#[test]
fn the_seed_recorded_at_start_decides_random_draws_and_replays_the_same() {
    let reg = registry();
    let run = |seed: u64| {
        let mut ex = Execution::new("dice-1");
        let start = Event::Started {
            name: "Effects".to_owned(),
            input: json(&1u64),
            seed: Some(seed),
            first_seq: 0,
            parent: None,
            version: 1,
        };
        let t0 = ex.run_turn(0, vec![start], &reg).expect("ok");
        let live = ex
            .run_turn(1, vec![completed(1, 2)], &reg)
            .expect("ok")
            .outcome;
        let mut again = Execution::replay("dice-1", &t0.events, &reg).expect("fits");
        let replayed = again
            .run_turn(1, vec![completed(1, 2)], &reg)
            .expect("ok")
            .outcome;
        assert_eq!(live, replayed, "replay draws the same");
        live
    };
    assert_ne!(run(1), run(2), "one id, two databases, two seeds");
}
