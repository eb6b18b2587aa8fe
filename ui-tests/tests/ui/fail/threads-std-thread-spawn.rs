use durable::{orchestrator, Context};

#[orchestrator]
async fn crunch(_ctx: Context, numbers: Vec<u64>) -> u64 {
    let worker = std::thread::spawn(move || numbers.iter().sum::<u64>());
    worker.join().unwrap_or_default()
}

fn main() {
    let _ = crunch;
}
