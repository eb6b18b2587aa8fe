use durable::orchestrator;

#[orchestrator]
struct Checkout;

fn main() {
    let _ = Checkout;
}
