//! The pre-deploy check: which live instances (pending, running, suspended
//! or stuck) in a database would this build fail to replay, and where? Run
//! it against a copy of the production database in CI before deploying; a
//! breaking change becomes a failed check instead of an incident.
//!
//! Run: `cargo run --release -p durable-examples --example check_db -- <db>`
//! (the examples' registrations; a project builds the same few lines with
//! its own). Exits 0 when every live instance replays, 1 when some would
//! not (each printed with both call sites), 2 when the database cannot be
//! read.

use durable::Runtime;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "orders.db".to_owned());
    let build = durable_examples::register_all(Runtime::builder().sqlite(&path));
    match build.check_database() {
        Ok(bad) if bad.is_empty() => {
            println!("{path}: every live instance replays on this build");
        }
        Ok(bad) => {
            for b in &bad {
                println!("{b}");
            }
            println!(
                "{path}: {} live instances would not replay on this build",
                bad.len()
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    }
}
