//! The aggregator pattern with a durable entity: a counter per device kind,
//! fed by many concurrent senders. Each signal is durable once
//! acknowledged and applied exactly once, in the order it was committed;
//! the state is read at any time, and a reset reports what it cleared.

use durable::entity;
use serde::{Deserialize, Serialize};

/// Readings counted for one key: how many, their sum and the largest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readings {
    /// How many readings were added.
    pub count: u64,
    /// Their sum.
    pub total: u64,
    /// The largest one.
    pub max: u64,
}

#[entity]
impl Readings {
    /// Adds one reading.
    pub fn add(&mut self, value: u64) {
        self.count += 1;
        self.total += value;
        self.max = self.max.max(value);
    }

    /// The mean so far (`None` before the first reading): a read.
    pub fn mean(&self) -> Option<u64> {
        self.total.checked_div(self.count)
    }

    /// Clears the counter and returns what it held.
    pub fn reset(&mut self) -> Readings {
        std::mem::take(self)
    }
}

/// Registers the aggregator's entity.
pub fn register(builder: durable::Builder) -> durable::Builder {
    builder.entity::<Readings>()
}
