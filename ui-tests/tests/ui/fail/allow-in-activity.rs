use std::time::SystemTime;

use durable::activity;

#[activity]
async fn stamp() -> SystemTime {
    #[durable::allow(wall_clock, reason = "an activity may read the clock")]
    let now = SystemTime::now();
    now
}

fn main() {
    let _ = stamp;
}
