//! Runnable durable workflows. Each module is one workflow; the binaries in
//! `examples/` run them on a SQLite file and the tests in `tests/` check them.

pub mod order;
