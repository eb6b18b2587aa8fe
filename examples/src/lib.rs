//! Runnable durable workflows. Each module is one workflow; the binaries in
//! `examples/` run them on a SQLite file and the tests in `tests/` check them.
//!
//! | module | pattern |
//! |---|---|
//! | [`order`] | a saga: each failed step undoes the ones before it |
//! | [`chaining`] | activities one after another, each output the next input |
//! | [`fan_out`] | fan-out/fan-in over activities with `durable::join_all` |
//! | [`monitor`] | polling on a durable timer until done or a deadline, continuing as new |
//! | [`approval`] | human interaction: an event raced against a timeout, with escalation |
//! | [`eternal`] | an eternal orchestration fed by events, its total readable as custom status |
//! | [`children`] | a parent fanning out over child orchestrations |
//! | [`aggregator`] | a durable entity: a counter fed by concurrent signals |
//! | [`bank`] | accounts as entities, transfers in critical sections |

pub mod aggregator;
pub mod approval;
pub mod bank;
pub mod chaining;
pub mod children;
pub mod eternal;
pub mod fan_out;
pub mod monitor;
pub mod order;

/// Every example's orchestrators, activities and entities on one builder:
/// the registrations of this build, for the pre-deploy database check.
pub fn register_all(builder: durable::Builder) -> durable::Builder {
    let builder = order::register(builder);
    let builder = chaining::register(builder);
    let builder = fan_out::register(builder);
    let builder = monitor::register(builder);
    let builder = approval::register(builder);
    let builder = eternal::register(builder);
    let builder = children::register(builder);
    let builder = aggregator::register(builder);
    bank::register(builder)
}
