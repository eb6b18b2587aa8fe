//! Order checkout: reserve stock, charge the card, wait for a manager's
//! approval (or time out), then ship; a failed step undoes the ones before
//! it (a saga).

use std::time::Duration;

use durable::{activity, orchestrator, ActivityError, ActivityInfo, Context, Either};
use serde::{Deserialize, Serialize};

/// What the customer ordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The customer's name.
    pub customer: String,
    /// The item's SKU.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The total, in cents.
    pub amount_cents: u64,
}

/// How a checkout ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Shipped, with its tracking number.
    Shipped {
        /// The carrier's tracking number.
        tracking: String,
    },
    /// Refused by the payment provider; the stock was released.
    PaymentDeclined {
        /// The provider's reason.
        reason: String,
    },
    /// Not approved in time; the payment was refunded and the stock released.
    NotApproved,
}

/// A payment refused by the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declined {
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "declined: {}", self.reason)
    }
}

impl std::error::Error for Declined {}

fn log(step: &str) {
    let key = ActivityInfo::current().map_or_else(String::new, |i| {
        format!(" [{} attempt {}]", i.idempotency_key(), i.attempt())
    });
    println!("  activity: {step}{key}");
}

/// Reserves stock; returns the reservation id.
#[activity]
pub async fn reserve_stock(sku: String, quantity: u32) -> String {
    log(&format!("reserve {quantity} x {sku}"));
    format!("rsv-{sku}-{quantity}")
}

/// Releases a reservation (compensation).
#[activity]
pub async fn release_stock(reservation: String) {
    log(&format!("release {reservation}"));
}

/// Charges the card; orders above $1,000 are declined.
#[activity]
pub async fn charge_card(customer: String, amount_cents: u64) -> Result<String, Declined> {
    log(&format!(
        "charge {customer} ${}.{:02}",
        amount_cents / 100,
        amount_cents % 100
    ));
    if amount_cents > 100_000 {
        return Err(Declined {
            reason: "over the card's limit".to_owned(),
        });
    }
    Ok(format!("pay-{customer}-{amount_cents}"))
}

/// Refunds a payment (compensation).
#[activity]
pub async fn refund(payment: String) {
    log(&format!("refund {payment}"));
}

/// Hands the parcel to the carrier; returns the tracking number.
#[activity]
pub async fn ship(customer: String, reservation: String) -> String {
    log(&format!("ship {reservation} to {customer}"));
    format!("TRACK-{}", reservation.len() * 1000 + customer.len())
}

/// The checkout workflow.
#[orchestrator]
pub async fn checkout(ctx: Context, order: Order, approval_timeout_ms: u64) -> Outcome {
    let say = |msg: &str| {
        if !ctx.is_replaying() {
            println!("orchestrator {}: {msg}", ctx.instance_id());
        }
    };
    say("reserving stock");
    let reservation = ctx
        .call(reserve_stock, (order.sku.clone(), order.quantity))
        .await
        .unwrap_or_default();
    say("charging the card");
    let payment = match ctx
        .call(charge_card, (order.customer.clone(), order.amount_cents))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            say(&format!("payment failed ({e}), releasing stock"));
            let _ = ctx.call(release_stock, reservation).await;
            let reason = match e {
                ActivityError::Failed(d) => d.reason,
                other => other.to_string(),
            };
            return Outcome::PaymentDeclined { reason };
        }
    };
    say("waiting for approval");
    let approval = durable::select(
        ctx.wait_event::<bool>("approval"),
        ctx.sleep(Duration::from_millis(approval_timeout_ms)),
    )
    .await;
    if !matches!(approval, Either::Left(true)) {
        say("not approved: refunding and releasing");
        let (_, _) = durable::join(
            ctx.call(refund, payment),
            ctx.call(release_stock, reservation),
        )
        .await;
        return Outcome::NotApproved;
    }
    say("approved, shipping");
    let tracking = ctx
        .call(ship, (order.customer.clone(), reservation))
        .await
        .unwrap_or_default();
    say("done");
    Outcome::Shipped { tracking }
}

/// Registers the workflow's orchestrator and activities.
pub fn register(builder: durable::Builder) -> durable::Builder {
    builder
        .activity(reserve_stock)
        .activity(release_stock)
        .activity(charge_card)
        .activity(refund)
        .activity(ship)
        .orchestrator(checkout)
}
