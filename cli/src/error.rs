//! What goes wrong, as a message that says what to do and an exit code.

use std::fmt;

use durable::{Error, StoreError};

/// The exit codes of the `durable` command. Scripts can rely on them.
///
/// | code | meaning |
/// |---|---|
/// | 0 | done; `wait`: the instance completed; `check`: every live instance replays |
/// | 1 | `wait`: the instance failed; `check`: some live instance would not replay |
/// | 2 | `wait`: the instance was terminated |
/// | 3 | `wait`: it had not finished when `--timeout` ran out |
/// | 4 | no instance has that id |
/// | 5 | the instance's state refuses the command (raising to a finished instance, resuming one not suspended, purging one still running, ...) |
/// | 64 | bad usage or input: arguments, JSON, no store given, a purge by filter without `--yes`, `check` in a binary without registrations |
/// | 69 | the store or the server cannot be opened or reached (a `--db` file that does not exist among them) |
/// | 70 | anything else (a store error, an answer the command does not understand) |
/// | 77 | the HTTP API refused the bearer token, or wants one |
pub mod exit {
    /// Done; `wait`: completed; `check`: nothing breaks.
    pub const OK: u8 = 0;
    /// `wait`: the instance failed; `check`: some live instance would not replay.
    pub const FAILED: u8 = 1;
    /// `wait`: the instance was terminated.
    pub const TERMINATED: u8 = 2;
    /// `wait`: it had not finished when the timeout ran out.
    pub const TIMEOUT: u8 = 3;
    /// No instance has that id.
    pub const NOT_FOUND: u8 = 4;
    /// The instance's state refuses the command.
    pub const REFUSED: u8 = 5;
    /// Bad usage or input.
    pub const USAGE: u8 = 64;
    /// The store or the server cannot be opened or reached.
    pub const UNAVAILABLE: u8 = 69;
    /// Anything else.
    pub const INTERNAL: u8 = 70;
    /// The HTTP API refused the token, or wants one.
    pub const UNAUTHORIZED: u8 = 77;
}

/// The table of exit codes, as `--help` shows it.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0   done (wait: completed; check: every live instance replays)
  1   wait: the instance failed; check: some live instance would not replay
  2   wait: the instance was terminated
  3   wait: not finished when --timeout ran out
  4   no instance has that id
  5   the instance's state refuses the command (finished, not suspended, ...)
  64  bad usage or input (arguments, JSON, no store given, purge without --yes)
  69  the store or the server cannot be opened or reached
  70  anything else
  77  the HTTP API refused the bearer token, or wants one";

/// A failure of a command: what went wrong, what to do, and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl CliError {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }

    /// The same error with what to do about it.
    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InstanceNotFound { .. } => Self::new(exit::NOT_FOUND, message)
                .hint("`durable list` shows the instances (`--prefix` narrows it)"),
            Error::InstanceFinished { .. } => Self::new(exit::REFUSED, message)
                .hint("a finished instance takes no events or commands; `durable describe ID` shows how it ended"),
            Error::InvalidState { operation, .. } => {
                let hint = match operation {
                    "purge" => "only finished instances are purged: terminate it first (`durable terminate ID --reason ..`) or wait for it",
                    "resume" => "only a suspended instance is resumed",
                    _ => "`durable describe ID` shows its status",
                };
                Self::new(exit::REFUSED, message).hint(hint)
            }
            Error::InvalidToken { .. } => Self::usage(message)
                .hint("pass the token exactly as the `next page` line of `durable list` printed it"),
            Error::InvalidName { .. } | Error::Payload { .. } | Error::PayloadTooLarge { .. } => {
                Self::usage(message)
            }
            Error::Store(store) => store.into(),
            _ => Self::new(exit::INTERNAL, message),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::ForeignDatabase { .. } | StoreError::SchemaVersion { .. } => {
                Self::new(exit::UNAVAILABLE, message)
                    .hint("point --db or --postgres at the database your durable runtime uses")
            }
            StoreError::Busy | StoreError::Unavailable(_) | StoreError::Closed => {
                Self::new(exit::UNAVAILABLE, message).hint("try again; check that the database is up and reachable")
            }
            StoreError::ReadOnly(_) => Self::new(exit::UNAVAILABLE, message)
                .hint("the command line opens the database for writing: run it as a user that may write the file and its folder"),
            _ => Self::new(exit::INTERNAL, message),
        }
    }
}
