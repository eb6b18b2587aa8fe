//! The stock `durable` command line. Every command but `check`, which
//! needs a binary built with your registrations (see `durable_cli::run`).

fn main() -> std::process::ExitCode {
    durable_cli::run_stock()
}
