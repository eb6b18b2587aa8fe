//! Work that crosses processes: a parent orchestration (`relay`) that
//! calls a child (`leg`) each lap and continues as new between laps, both
//! waiting on timers and calling activities, and an entity (`Ledger`)
//! that both processes' orchestrations and clients signal. Run by
//! `src/bin/across.rs`, where the process that started the relays stops
//! while their children wait on timers, so the others fire those timers,
//! finish the children and run the relays' later executions.
//!
//! (A process registering only the parent cannot leave the child to a
//! process registering only the child: the runtime fails the parent with
//! `UnregisteredOrchestrator` when it calls an unregistered child; see the
//! report of issue 12. Every process registers everything here.)
//!
//! Every value depends on what came before it, and each signal carries a
//! number of its own, so a lost, repeated or misplaced step shows in the
//! outputs or in the ledger.

use std::time::Duration;

use durable::{activity, entity, orchestrator, Context};
use serde::{Deserialize, Serialize};

use crate::workload::mix;

/// Relays started.
pub const RELAYS: u64 = 6;
/// Executions each relay runs (it continues as new between them).
pub const LAPS: u64 = 3;
/// Signals each process's client sends the ledger.
pub const CLIENT_SIGNALS: u64 = 20;
/// The ledger's key.
pub const LEDGER: &str = "shared";
/// The first number a process's client signals: the first process's, the
/// second's.
pub const CLIENT_BASE: [u64; 2] = [900_000, 800_000];

/// Every number signalled, in the order it was applied.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// The numbers.
    pub entries: Vec<u64>,
}

#[entity]
impl Ledger {
    fn add(&mut self, n: u64) {
        self.entries.push(n);
    }
}

/// The number relay `r` signals at lap `lap`: `side` 0 by the parent, 1
/// by its child.
pub fn ticket(r: u64, lap: u64, side: u64) -> u64 {
    r * 1_000 + lap * 10 + side
}

/// How long a child waits on its timer: long enough that the process
/// that started it has stopped before it fires.
pub const LEG_TIMER: Duration = Duration::from_millis(1_000);

/// The parent's step.
#[activity]
pub async fn stamp(x: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    mix(x, 1)
}

/// The child's step.
#[activity]
pub async fn bump(x: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    mix(x, 2)
}

/// A child: waits on a timer, runs its step, signals the ledger.
#[orchestrator]
pub async fn leg(ctx: Context, call: (u64, u64)) -> u64 {
    let (x, number) = call;
    ctx.sleep(LEG_TIMER).await;
    let Ok(y) = ctx.call(bump, x).await else {
        return u64::MAX;
    };
    ctx.entity::<Ledger>(LEDGER).signal().add(number);
    y
}

/// A parent: per lap a timer, its step, a child, a signal; then it
/// continues as new with the value so far.
#[orchestrator]
pub async fn relay(ctx: Context, at: (u64, u64, u64)) -> u64 {
    let (r, lap, acc) = at;
    ctx.sleep(Duration::from_millis(30)).await;
    let Ok(stamped) = ctx.call(stamp, mix(acc, lap)).await else {
        return u64::MAX;
    };
    let Ok(returned) = ctx.call_child(leg, (stamped, ticket(r, lap, 1))).await else {
        return u64::MAX;
    };
    ctx.entity::<Ledger>(LEDGER).signal().add(ticket(r, lap, 0));
    let acc = mix(stamped, returned);
    if lap + 1 >= LAPS {
        return acc;
    }
    ctx.continue_as_new((r, lap + 1, acc)).await
}

/// The id of relay `r`.
pub fn relay_id(r: u64) -> String {
    format!("relay-{r}")
}

/// The input relay `r` starts with.
pub fn relay_input(r: u64) -> (u64, u64, u64) {
    (r, 0, r * 7 + 1)
}

/// Relay `r`'s executions: each one's input and what its child returns.
fn laps(r: u64) -> Vec<((u64, u64, u64), u64)> {
    let mut input = relay_input(r);
    let mut out = Vec::new();
    for lap in 0..LAPS {
        let stamped = mix(mix(input.2, lap), 1);
        let returned = mix(stamped, 2);
        out.push((input, returned));
        input = (r, lap + 1, mix(stamped, returned));
    }
    out
}

/// The value each lap's child returns, and the relay's output.
pub fn expected(r: u64) -> (Vec<u64>, u64) {
    let laps = laps(r);
    let legs = laps.iter().map(|(_, returned)| *returned).collect();
    let output = laps.last().map_or(0, |((_, lap, acc), returned)| {
        mix(mix(mix(*acc, *lap), 1), *returned)
    });
    (legs, output)
}

/// The input of relay `r`'s last execution.
pub fn last_input(r: u64) -> (u64, u64, u64) {
    laps(r).last().map_or(relay_input(r), |(input, _)| *input)
}

/// The ledger's numbers, in the order each sender sent them: one list per
/// relay (its child's and its own, lap by lap) and one per client.
pub fn senders() -> Vec<Vec<u64>> {
    let mut out: Vec<Vec<u64>> = (0..RELAYS)
        .map(|r| {
            (0..LAPS)
                .flat_map(|lap| [ticket(r, lap, 1), ticket(r, lap, 0)])
                .collect()
        })
        .collect();
    for base in CLIENT_BASE {
        out.push((base..base + CLIENT_SIGNALS).collect());
    }
    out
}
