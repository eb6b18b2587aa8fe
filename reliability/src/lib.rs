//! Reliability tests of `durable`: a workload run as real processes and
//! killed at random moments, storage that fails on purpose, poison work,
//! and worker processes sharing one PostgreSQL schema.
//!
//! The workload lives in [`workload`]; the `workload` binary runs it on a
//! SQLite file or a PostgreSQL schema ([`target`]), and the tests in
//! `tests/` do the damage ([`procs`], [`pg`]) and check the result
//! ([`check`]).

pub mod across;
pub mod check;
pub mod claims;
pub mod pg;
pub mod procs;
pub mod recorded;
pub mod target;
pub mod workload;
