//! Reliability tests of `durable`: a workload run as a real process and
//! killed at random moments, storage that fails on purpose, poison work.
//!
//! The workload lives in [`workload`]; the `workload` binary runs it on a
//! SQLite file, and the tests in `tests/` do the damage and check the result.

pub mod check;
pub mod workload;
