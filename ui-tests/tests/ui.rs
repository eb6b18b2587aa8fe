//! The UI suite: every case in `ui/fail/` must fail to compile with exactly
//! the error in the `.stderr` beside it, and every case in `ui/pass/` must
//! compile and run. The snapshots depend on the compiler version; after a
//! toolchain or message change, regenerate them with
//! `TRYBUILD=overwrite cargo test -p durable-ui-tests` and read the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
