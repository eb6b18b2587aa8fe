//! An RNG built from an explicit seed (here the context's random source)
//! replays the same numbers.

use durable::{orchestrator, Context};

/// Stands in for the `rand` crate.
mod rand {
    pub mod rngs {
        pub struct StdRng(pub u64);
    }
    pub trait SeedableRng: Sized {
        fn seed_from_u64(seed: u64) -> Self;
    }
    impl SeedableRng for rngs::StdRng {
        fn seed_from_u64(seed: u64) -> Self {
            Self(seed)
        }
    }
}

#[orchestrator]
async fn shuffle(ctx: Context, mut cards: Vec<u64>) -> Vec<u64> {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    let rng = StdRng::seed_from_u64(ctx.random());
    let len = cards.len().max(1);
    cards.rotate_left(usize::try_from(rng.0).unwrap_or_default() % len);
    cards
}

fn main() {
    let _ = shuffle;
}
