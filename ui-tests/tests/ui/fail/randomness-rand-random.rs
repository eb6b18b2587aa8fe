use durable::{orchestrator, Context};

/// Stands in for the `rand` crate, so the checker's is the only error.
mod rand {
    pub fn random<T: Default>() -> T {
        T::default()
    }
}

#[orchestrator]
async fn pick(_ctx: Context, choices: Vec<String>) -> Option<String> {
    let index: usize = rand::random();
    choices.get(index % choices.len().max(1)).cloned()
}

fn main() {
    let _ = pick;
}
