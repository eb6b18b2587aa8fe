use durable::{orchestrator, Context};

#[orchestrator]
async fn fire_and_forget(_ctx: Context) {
    drop(tokio::spawn(async {}));
}

fn main() {
    let _ = fire_and_forget;
}
