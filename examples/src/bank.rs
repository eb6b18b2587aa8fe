//! Accounts as durable entities and transfers as orchestrations: each
//! transfer locks both accounts in a critical section, so no other transfer
//! or audit sees money that has left one account and not reached the
//! other. Locks are taken in one global order, so transfers in opposite
//! directions never deadlock.

use durable::{entity, orchestrator, Context, EntityId};
use serde::{Deserialize, Serialize};

/// Why a withdrawal was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdrawn {
    /// What the account holds.
    pub balance: i64,
    /// What was asked for.
    pub wanted: i64,
}

impl std::fmt::Display for Overdrawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "insufficient funds: {} available, {} wanted",
            self.balance, self.wanted
        )
    }
}

/// A bank account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its balance, in cents.
    pub balance: i64,
}

#[entity]
impl Account {
    /// Adds `amount` cents.
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    /// Takes `amount` cents, or refuses without changing anything.
    pub fn withdraw(&mut self, amount: i64) -> Result<i64, Overdrawn> {
        if amount > self.balance {
            return Err(Overdrawn {
                balance: self.balance,
                wanted: amount,
            });
        }
        self.balance -= amount;
        Ok(self.balance)
    }

    /// The balance: a read.
    pub fn balance(&self) -> i64 {
        self.balance
    }
}

/// A transfer of `amount` cents from one account to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// How much, in cents.
    pub amount: i64,
}

/// Moves the money inside a critical section over both accounts; returns
/// the payer's new balance, or why it was refused (nothing moved then).
#[orchestrator]
pub async fn transfer(ctx: Context, t: Transfer) -> Result<i64, String> {
    let lock = ctx
        .lock([
            EntityId::of::<Account>(&t.from),
            EntityId::of::<Account>(&t.to),
        ])
        .await;
    let left = match ctx.entity::<Account>(&t.from).withdraw(t.amount).await {
        Ok(Ok(left)) => left,
        Ok(Err(overdrawn)) => return Err(overdrawn.to_string()),
        Err(e) => return Err(e.to_string()),
    };
    ctx.entity::<Account>(&t.to)
        .deposit(t.amount)
        .await
        .map_err(|e| e.to_string())?;
    lock.release();
    Ok(left)
}

/// The sum of the balances of `accounts`, read in one critical section:
/// never a transfer half done.
#[orchestrator]
pub async fn audit(ctx: Context, accounts: Vec<String>) -> i64 {
    let lock = ctx
        .lock(accounts.iter().map(|a| EntityId::of::<Account>(a)))
        .await;
    let mut total = 0;
    for a in &accounts {
        total += ctx.entity::<Account>(a).balance().await.unwrap_or(0);
    }
    lock.release();
    total
}

/// Registers the bank's entity and orchestrators.
pub fn register(builder: durable::Builder) -> durable::Builder {
    builder
        .entity::<Account>()
        .orchestrator(transfer)
        .orchestrator(audit)
}
