use durable::{orchestrator, Context};

/// Stands in for the `uuid` crate, so the checker's is the only error.
mod uuid {
    pub struct Uuid(pub u128);
    impl Uuid {
        pub fn new_v4() -> Self {
            Self(4)
        }
    }
}

#[orchestrator]
async fn order_id(_ctx: Context) -> u128 {
    uuid::Uuid::new_v4().0
}

fn main() {
    let _ = order_id;
}
