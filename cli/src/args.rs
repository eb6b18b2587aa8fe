//! The command line's grammar (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use durable::RuntimeStatus;

use crate::error::EXIT_CODES;

const ABOUT: &str = "See and steer durable instances: list, describe, follow their history, raise events, terminate, suspend, resume, purge, wait.";

const AFTER_HELP: &str = "\
The store, one of:
  --db PATH          a SQLite file (or DURABLE_DB)
  --postgres URL     a PostgreSQL database, with --schema (or DURABLE_POSTGRES, DURABLE_SCHEMA)
  --url URL          a durable HTTP API, with the token in DURABLE_TOKEN or --token (or DURABLE_URL)

Examples:
  durable --db app.db list --status running
  durable --db app.db describe order-7
  durable --db app.db history order-7 --follow
  durable --db app.db raise order-7 approved '{\"by\": \"ada\"}'
  durable --db app.db wait order-7 --timeout 30s";

/// `durable`: the command line of durable workflows.
#[derive(Debug, Parser)]
#[command(
    name = "durable",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    after_long_help = format!("{AFTER_HELP}\n\n{EXIT_CODES}"),
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) store: StoreArgs,

    /// How to print: tables for people, JSON for scripts (jsonl: one JSON
    /// value per line, for `history` and `list`).
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub(crate) output: Format,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the instances are.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The SQLite file of your runtime (env: DURABLE_DB). It must exist.
    #[arg(long, value_name = "PATH", global = true)]
    pub(crate) db: Option<PathBuf>,

    /// The PostgreSQL database of your runtime, as
    /// `postgres://user@host/db` or `host=.. user=.. dbname=..`
    /// (env: DURABLE_POSTGRES).
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) postgres: Option<String>,

    /// The PostgreSQL schema (default `durable`; env: DURABLE_SCHEMA).
    #[arg(long, value_name = "NAME", global = true)]
    pub(crate) schema: Option<String>,

    /// A durable HTTP API, as `http://host:port` (env: DURABLE_URL).
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) url: Option<String>,

    /// The HTTP API's bearer token. Prefer the DURABLE_TOKEN environment
    /// variable: a command line is visible to other users of the machine.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "DURABLE_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub(crate) token: Option<String>,
}

/// How output is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned tables and lines for people.
    Table,
    /// One JSON document.
    Json,
    /// One JSON value per line.
    Jsonl,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List instances, newest first, a page at a time.
    List(ListArgs),
    /// Show an instance: its status, input, output, and what it waits on.
    Describe {
        /// The instance's id.
        id: String,
    },
    /// Show an instance's history, with the source line of each step.
    History {
        /// The instance's id.
        id: String,
        /// Keep printing new events until the instance finishes.
        #[arg(short, long)]
        follow: bool,
    },
    /// Raise an event: deliver it to a running instance.
    Raise {
        /// The instance's id.
        id: String,
        /// The event's name, as the orchestrator waits for it.
        event: String,
        /// The event's data as JSON (default: null); `-` reads it from stdin.
        /// A string is quoted: '"yes"'.
        data: Option<String>,
        /// Deliver it at most once per key (safe to retry).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// Terminate a running instance (it ends at its next turn).
    Terminate {
        /// The instance's id.
        id: String,
        /// Why: recorded in its history.
        #[arg(long, short)]
        reason: Option<String>,
    },
    /// Suspend an instance: it runs no turn until resumed.
    Suspend {
        /// The instance's id.
        id: String,
        /// Why: recorded in its history.
        #[arg(long, short)]
        reason: Option<String>,
    },
    /// Resume a suspended instance.
    Resume {
        /// The instance's id.
        id: String,
        /// Why: recorded in its history.
        #[arg(long, short)]
        reason: Option<String>,
    },
    /// Delete finished instances and their histories: one by id, or all a
    /// filter selects (which needs --yes, or --dry-run to see them first).
    Purge(PurgeArgs),
    /// Wait for an instance to finish; the exit code tells how it ended
    /// (0 completed, 1 failed, 2 terminated, 3 timed out).
    Wait {
        /// The instance's id.
        id: String,
        /// Give up after this long (500ms, 30s, 5m, 2h, ...): exit code 3.
        #[arg(long, short, value_parser = crate::time::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Compare two instances of one orchestrator: their steps aligned by
    /// sequence number, and where they took different paths.
    Diff {
        /// The first instance's id.
        a: String,
        /// The second instance's id.
        b: String,
    },
    /// Before a deploy: which live instances would this build's code fail
    /// to replay? Only in a binary built with your registrations (see
    /// `durable_cli::run`).
    Check,
}

/// `durable list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only these statuses (comma-separated or repeated): pending, running,
    /// suspended, stuck, completed, failed, terminated.
    #[arg(long, short, value_delimiter = ',', value_parser = parse_status)]
    pub(crate) status: Vec<RuntimeStatus>,
    /// Only instances of this orchestrator (its stored name).
    #[arg(long)]
    pub(crate) orchestrator: Option<String>,
    /// Only ids that start with this.
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// How many per page (1 to 10000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) page_size: u64,
    /// The page after the one that printed this token.
    #[arg(long, value_name = "TOKEN")]
    pub(crate) after: Option<String>,
    /// Every page, not only the first.
    #[arg(long, conflicts_with = "after")]
    pub(crate) all: bool,
}

/// `durable purge`.
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// The instance to purge; without it, the filters select.
    #[arg(conflicts_with_all = ["status", "orchestrator", "prefix", "older_than", "yes"])]
    pub(crate) id: Option<String>,
    /// Only these finished statuses (default: completed, failed and
    /// terminated).
    #[arg(long, short, value_delimiter = ',', value_parser = parse_status)]
    pub(crate) status: Vec<RuntimeStatus>,
    /// Only instances of this orchestrator.
    #[arg(long)]
    pub(crate) orchestrator: Option<String>,
    /// Only ids that start with this.
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// Only instances that finished longer ago than this (7d, 12h, ...).
    #[arg(long, value_parser = crate::time::parse_duration, value_name = "DURATION")]
    pub(crate) older_than: Option<Duration>,
    /// List what would be purged, and purge nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Purge what the filter selects (required without an id).
    #[arg(long, short)]
    pub(crate) yes: bool,
}

/// A status as clap reads it.
fn parse_status(text: &str) -> Result<RuntimeStatus, String> {
    text.trim().to_ascii_lowercase().parse().map_err(|_| {
        format!("`{text}` is not a status: use pending, running, suspended, stuck, completed, failed or terminated")
    })
}
