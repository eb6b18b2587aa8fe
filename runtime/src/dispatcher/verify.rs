//! Verify mode: each turn is run a second time, in a fresh execution
//! rebuilt from the instance's history, and must make the same decisions.
//! Code that reads something outside history where the checker cannot see
//! it (a helper function reading the clock, a `HashMap` reached through a
//! struct) makes different ones, and is caught on the first run.

use crate::history::{Event, Failure, FailureKind, HistoryRecord};
use crate::registry::Registry;
use crate::replay::{Execution, Outcome, Parked};
use crate::store::Restart;

/// Whether `event` is delivered to the orchestrator (a turn's input), as
/// opposed to something the turn decided.
fn delivered(event: &Event) -> bool {
    !event.is_decision() && !matches!(event, Event::TimerCancelled { .. })
}

/// The events a restart decided: the next `Started`, then those carried.
fn restarted(restart: &Restart) -> impl Iterator<Item = &Event> {
    std::iter::once(&restart.started).chain(&restart.carried)
}

/// Whether two runs of a turn decided alike.
fn alike(a: &Event, b: &Event) -> bool {
    a == b
}

/// Runs the turn that recorded `turn` again on `history` (everything
/// before it) in a fresh execution; the first decision that differs. A
/// turn that continued as new (`restart`) must do so again, with the same
/// input and the same events carried over.
pub(super) fn turn(
    id: &str,
    history: &[HistoryRecord],
    turn: &[HistoryRecord],
    restart: Option<&Restart>,
    registry: &Registry,
) -> Result<(), Failure> {
    let Some(at) = turn.first().map(|r| r.at) else {
        return Ok(());
    };
    let mut fresh = Execution::replay(id, history, registry).map_err(|Parked(f)| f)?;
    // A side effect is computed outside replay by design: the second run
    // gets the first run's values, and what follows from them must match.
    fresh.preset_side_effects(turn.iter().filter_map(|r| match &r.event {
        Event::SideEffect { seq, value, .. } => Some((*seq, value.clone())),
        _ => None,
    }));
    let incoming = turn
        .iter()
        .map(|r| r.event.clone())
        .filter(delivered)
        .collect();
    let again = fresh
        .run_turn(at, incoming, registry)
        .map_err(|Parked(f)| f)?;
    let mut first: Vec<&Event> = turn.iter().map(|r| &r.event).collect();
    let mut second: Vec<&Event> = again.events.iter().map(|r| &r.event).collect();
    // A restart's decisions are the next execution's `Started` (its input)
    // and what it carries over: compared as the turn's last events.
    first.extend(restart.into_iter().flat_map(restarted));
    if let Some(Outcome::ContinuedAsNew { started, carried }) = &again.outcome {
        second.extend(std::iter::once(started).chain(carried));
    }
    let differs = first
        .iter()
        .zip(&second)
        .position(|(a, b)| !alike(a, b))
        .or_else(|| (first.len() != second.len()).then(|| first.len().min(second.len())));
    match differs {
        None => Ok(()),
        Some(i) => {
            let show =
                |e: Option<&&Event>| e.map_or_else(|| "nothing".to_owned(), |e| format!("{e:?}"));
            Err(Failure::new(
                FailureKind::Nondeterminism,
                format!(
                    "verify mode: turn {} decided differently when run again from the same history: \
                     first {}, then {}; the code reads something history does not hold (the clock, \
                     randomness, I/O, a HashMap's order) where the checker cannot see it",
                    turn[0].turn,
                    show(first.get(i)),
                    show(second.get(i)),
                ),
            ))
        }
    }
}
