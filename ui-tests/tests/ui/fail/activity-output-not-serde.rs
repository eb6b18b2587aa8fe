use durable::activity;

pub struct Receipt {
    pub amount: u64,
}

#[activity]
async fn charge(amount: u64) -> Receipt {
    Receipt { amount }
}

fn main() {
    let _ = charge;
}
