//! `durable check`: before a deploy, which live instances would this
//! build's code fail to replay? Only a binary built with the code's
//! registrations can tell.

use durable::store::PostgresOptions;
use durable::{Builder, Error};
use serde_json::json;

use crate::args::Format;
use crate::backend::Target;
use crate::error::{exit, CliError};

/// How to build a binary that can check, as the stock one says it.
const HOW: &str = "\
`durable check` replays every live instance against your orchestrators' code, so it must run in a binary built with your registrations. Add one to your project, e.g. src/bin/durable.rs:

    fn main() -> std::process::ExitCode {
        durable_cli::run(my_app::register(durable::Runtime::builder()))
    }

(`register` adds your .orchestrator(..) and .activity(..) calls; depend on durable-cli), then run `cargo run --bin durable -- --db app.db check` in CI before deploying";

/// Runs the check; exit code 0 when every live instance replays, 1 when
/// some would not.
pub(crate) fn check(
    registrations: Option<Builder>,
    target: Option<&Target>,
    format: Format,
) -> Result<u8, CliError> {
    let Some(builder) = registrations else {
        return Err(CliError::usage(
            "this `durable` binary has no registrations, so it cannot check code against histories",
        )
        .hint(HOW));
    };
    let builder = match target {
        None => builder,
        Some(Target::Sqlite(path)) => builder.sqlite(path),
        Some(Target::Postgres { url, schema }) => {
            let mut options = PostgresOptions::default();
            if let Some(schema) = schema {
                options.schema.clone_from(schema);
            }
            builder.postgres_with(url, options)
        }
        Some(Target::Http { .. }) => {
            return Err(
                CliError::usage("`check` reads the database itself, not the HTTP API")
                    .hint("give the database with --db or --postgres"),
            );
        }
    };
    let found = builder.check_database().map_err(|e| match e {
        Error::NoStore => CliError::usage("no store given: which database to check?")
            .hint("add --db PATH or --postgres URL (or set DURABLE_DB or DURABLE_POSTGRES)"),
        Error::InvalidSetting { .. } | Error::Store(_) => {
            let mut error = CliError::from(e);
            error.code = exit::UNAVAILABLE;
            error
        }
        other => other.into(),
    })?;
    let code = if found.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    };
    let mut out = String::new();
    if format == Format::Table {
        for bad in &found {
            out.push_str(&format!("{bad}\n"));
        }
        if found.is_empty() {
            out.push_str("every live instance replays on this build\n");
        } else {
            out.push_str(&format!(
                "{} live instance{} would not replay on this build\n",
                found.len(),
                if found.len() == 1 { "" } else { "s" }
            ));
        }
    } else {
        let items: Vec<_> = found
            .iter()
            .map(|b| {
                json!({
                    "instance": b.instance,
                    "orchestrator": b.orchestrator,
                    "status": b.status,
                    "failure": b.failure,
                    "message": b.to_string(),
                })
            })
            .collect();
        out =
            serde_json::to_string_pretty(&json!({ "ok": found.is_empty(), "incompatible": items }))
                .unwrap_or_default();
        out.push('\n');
    }
    print!("{out}");
    Ok(code)
}
