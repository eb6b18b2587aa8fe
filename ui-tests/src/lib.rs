//! Compile-fail and compile-pass tests of the `durable` macros; the cases
//! live in `tests/ui/` and run under `cargo test`.
