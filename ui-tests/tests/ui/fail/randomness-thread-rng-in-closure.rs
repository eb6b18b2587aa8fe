use durable::{orchestrator, Context};

/// Stands in for the `rand` crate, so the checker's is the only error.
mod rand {
    pub struct ThreadRng;
    impl ThreadRng {
        pub fn next_u64(&mut self) -> u64 {
            4
        }
    }
    pub fn thread_rng() -> ThreadRng {
        ThreadRng
    }
}

#[orchestrator]
async fn jitter(_ctx: Context, delays: Vec<u64>) -> Vec<u64> {
    use rand::thread_rng;
    delays
        .into_iter()
        .map(|delay| delay + thread_rng().next_u64() % 10)
        .collect()
}

fn main() {
    let _ = jitter;
}
