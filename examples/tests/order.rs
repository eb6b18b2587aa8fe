//! The checkout workflow's three endings, on a real SQLite file.

use std::time::Duration;

use durable::Runtime;
use durable_examples::order::{self, checkout, Order, Outcome};

fn order(amount_cents: u64) -> Order {
    Order {
        customer: "ada".to_owned(),
        sku: "widget".to_owned(),
        quantity: 2,
        amount_cents,
    }
}

#[tokio::test]
async fn checkout_ships_refuses_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let rt = order::register(Runtime::builder().sqlite(dir.path().join("orders.db")))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let shipped = client
        .start(checkout, (order(1_000), 60_000))
        .await
        .unwrap();
    let declined = client
        .start(checkout, (order(500_000), 60_000))
        .await
        .unwrap();
    let timed_out = client.start(checkout, (order(1_000), 50)).await.unwrap();
    client
        .raise_event(shipped.id(), "approval", true)
        .await
        .unwrap();

    let wait = |h: durable::Handle<checkout>| async move {
        tokio::time::timeout(Duration::from_secs(30), h.result())
            .await
            .unwrap()
            .unwrap()
    };
    assert!(
        matches!(wait(shipped).await, Outcome::Shipped { tracking } if tracking.starts_with("TRACK-"))
    );
    assert_eq!(
        wait(declined).await,
        Outcome::PaymentDeclined {
            reason: "over the card's limit".to_owned()
        }
    );
    assert_eq!(wait(timed_out).await, Outcome::NotApproved);
    rt.shutdown().await.unwrap();
}
