//! The `durable` command line: see and steer durable instances without
//! writing Rust. It works on a SQLite file (`--db`), a PostgreSQL database
//! (`--postgres`, `--schema`) or through the HTTP API (`--url`, with the
//! bearer token in `DURABLE_TOKEN`).
//!
//! ```text
//! durable --db app.db list --status running
//! durable --db app.db describe order-7        # status, input, output, what it waits on
//! durable --db app.db history order-7 -o jsonl --follow
//! durable --db app.db raise order-7 approved '{"by": "ada"}'
//! durable --db app.db wait order-7 --timeout 30s; echo $?
//! ```
//!
//! The stock binary (`cargo install --path cli` in this repository, or
//! `cargo run -p durable-cli --`) does everything but `check`, the
//! pre-deploy check,
//! which replays live instances against *your* code and so needs your
//! registrations. Build a binary of your own with them:
//!
//! ```no_run
//! # use durable::{orchestrator, Context, Runtime};
//! # #[orchestrator] async fn checkout(_ctx: Context) {}
//! // src/bin/durable.rs in your project
//! fn main() -> std::process::ExitCode {
//!     durable_cli::run(Runtime::builder().orchestrator(checkout))
//! }
//! ```
//!
//! With the database given as `--db`/`--postgres` (or on the builder),
//! `durable check` then lists every live instance the build could not
//! replay, with both call sites, and exits 1 when there is one. Every
//! other command works in that binary as in the stock one, and never runs
//! your code: the commands use a runtime with nothing registered, which
//! takes no work.
//!
//! Exit codes: see [`exit`].

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use durable::Builder;

mod args;
mod backend;
mod check;
mod commands;
mod error;
mod render;
mod time;
mod waiting;

pub use error::exit;

use args::{Cli, Command, StoreArgs};
use backend::Target;
use error::CliError;

/// Runs the command line with the process's arguments, with `registrations`
/// (a builder with your orchestrators and activities) for `durable check`.
/// Give it no store: `--db`/`--postgres` name it (a store set on the
/// builder is used by `check` when neither is given). Returns the exit
/// code to return from `main` (see [`exit`]).
pub fn run(registrations: Builder) -> ExitCode {
    run_with(Some(registrations), std::env::args_os())
}

/// Runs the command line with the process's arguments and no
/// registrations: the stock `durable` binary, whose `check` explains how to
/// build one that can check.
pub fn run_stock() -> ExitCode {
    run_with(None, std::env::args_os())
}

/// Runs the command line on `args` (the first is the program's name), with
/// or without registrations for `check`. Prints to stdout and stderr and
/// returns the exit code (see [`exit`]).
pub fn run_with<I, T>(registrations: Option<Builder>, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::OK,
                _ => exit::USAGE,
            });
        }
    };
    match execute(cli, registrations) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("{e}");
            }
            ExitCode::from(e.code)
        }
    }
}

/// Runs one parsed command: the exit code, or the error to print.
fn execute(cli: Cli, registrations: Option<Builder>) -> Result<u8, CliError> {
    let target = target(&cli.store)?;
    if let Command::Check = cli.command {
        return check::check(registrations, target.as_ref(), cli.output);
    }
    let Some(target) = target else {
        return Err(CliError::usage("no store given: which instances?").hint(
            "add --db PATH (a SQLite file), --postgres URL or --url http://host:port, or set DURABLE_DB, DURABLE_POSTGRES or DURABLE_URL",
        ));
    };
    let mut backend = backend::open(&target)?;
    let result = {
        let mut stdout = std::io::stdout().lock();
        let mut ctx = commands::Ctx {
            backend: backend.as_mut(),
            format: cli.output,
            colour: cli.output == args::Format::Table && render::colour_stdout(),
            out: &mut stdout,
        };
        dispatch(&mut ctx, cli.command)
    };
    let closed = backend.close();
    let code = result?;
    closed?;
    Ok(code)
}

fn dispatch(ctx: &mut commands::Ctx<'_>, command: Command) -> Result<u8, CliError> {
    match command {
        Command::List(args) => commands::list(ctx, &args)?,
        Command::Describe { id } => commands::describe(ctx, &id)?,
        Command::History { id, follow } => commands::history(ctx, &id, follow)?,
        Command::Raise {
            id,
            event,
            data,
            key,
        } => commands::raise(ctx, &id, &event, data.as_deref(), key.as_deref())?,
        Command::Terminate { id, reason } => {
            commands::steer(ctx, "terminate", &id, reason.as_deref())?;
        }
        Command::Suspend { id, reason } => {
            commands::steer(ctx, "suspend", &id, reason.as_deref())?;
        }
        Command::Resume { id, reason } => commands::steer(ctx, "resume", &id, reason.as_deref())?,
        Command::Purge(args) => commands::purge(ctx, &args)?,
        Command::Wait { id, timeout } => return commands::wait(ctx, &id, timeout),
        Command::Diff { a, b } => commands::diff(ctx, &a, &b)?,
        Command::Check => unreachable!("invariant: `execute` runs check before opening a backend"),
    }
    ctx.out.flush().map_err(commands::io)?;
    Ok(exit::OK)
}

/// The store the flags name, else the one the environment names; `None`
/// when neither names one.
fn target(args: &StoreArgs) -> Result<Option<Target>, CliError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let flags: Vec<&str> = [
        ("--db", args.db.is_some()),
        ("--postgres", args.postgres.is_some()),
        ("--url", args.url.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    if flags.len() > 1 {
        return Err(CliError::usage(format!(
            "{} each name a store: give one",
            flags.join(" and ")
        )));
    }
    let (db, postgres, url) = if flags.is_empty() {
        let set: Vec<(&str, String)> = ["DURABLE_DB", "DURABLE_POSTGRES", "DURABLE_URL"]
            .into_iter()
            .filter_map(|name| env(name).map(|v| (name, v)))
            .collect();
        if set.len() > 1 {
            let names: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
            return Err(CliError::usage(format!(
                "{} are all set, and each names a store",
                names.join(" and ")
            ))
            .hint("unset all but one, or name the store with --db, --postgres or --url"));
        }
        let get = |name: &str| set.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        (
            get("DURABLE_DB").map(Into::into),
            get("DURABLE_POSTGRES"),
            get("DURABLE_URL"),
        )
    } else {
        (args.db.clone(), args.postgres.clone(), args.url.clone())
    };
    let schema = args.schema.clone().or_else(|| env("DURABLE_SCHEMA"));
    if args.schema.is_some() && postgres.is_none() {
        return Err(CliError::usage("--schema goes with --postgres"));
    }
    Ok(if let Some(path) = db {
        Some(Target::Sqlite(path))
    } else if let Some(url) = postgres {
        Some(Target::Postgres { url, schema })
    } else {
        url.map(|url| Target::Http {
            url,
            token: args.token.clone(),
        })
    })
}
