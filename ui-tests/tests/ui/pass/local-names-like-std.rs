//! A local fn, method or variable named `now`, `random` or `sleep`, and the
//! user's own types and modules named like std's, are not the real thing.

use durable::{orchestrator, Context};

mod clock {
    pub struct SystemTime;
    impl SystemTime {
        pub fn now() -> u64 {
            7
        }
    }
}

struct Dice;

impl Dice {
    fn random(&self) -> u64 {
        4
    }
    fn sleep(&self, turns: u64) -> u64 {
        turns
    }
}

#[orchestrator]
async fn local_names(ctx: Context) -> u64 {
    fn now() -> u64 {
        1
    }
    fn random() -> u64 {
        2
    }
    fn sleep(turns: u64) -> u64 {
        turns
    }
    let now = now() + random() + sleep(3);
    let random = Dice.random() + Dice.sleep(1);
    let sleep = ctx.now();
    let mine = crate::clock::SystemTime::now();
    let _ = sleep;
    now + random + mine
}

fn main() {
    let _ = local_names;
}
