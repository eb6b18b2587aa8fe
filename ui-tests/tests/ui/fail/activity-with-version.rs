use durable::activity;

#[activity(version = 2)]
async fn double(x: u64) -> u64 {
    x * 2
}

fn main() {
    let _ = double;
}
