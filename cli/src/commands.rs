//! Each command: what it asks the backend, and what it prints.

use std::io::{Read, Write};
use std::time::Duration;

use durable::history::HistoryRecord;
use durable::RuntimeStatus;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::args::{Format, ListArgs, PurgeArgs};
use crate::backend::{Backend, Filter, Instance};
use crate::error::{exit, CliError};
use crate::render::{
    history_row, paint, short_json, short_site, status_colour, truncate, Colour, Table,
    HISTORY_HEADER,
};
use crate::time::{now_micros, relative, rfc3339};
use crate::waiting::input;

/// What every command is given.
pub(crate) struct Ctx<'a> {
    pub(crate) backend: &'a mut dyn Backend,
    pub(crate) format: Format,
    /// Whether stdout takes colour.
    pub(crate) colour: bool,
    pub(crate) out: &'a mut dyn Write,
}

/// A write to stdout failed: a closed pipe (`| head`) ends the command
/// quietly; anything else is an error.
pub(crate) fn io(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::new(exit::OK, "")
    } else {
        CliError::new(exit::INTERNAL, format!("cannot write the output: {e}"))
    }
}

impl Ctx<'_> {
    fn line(&mut self, text: &str) -> Result<(), CliError> {
        writeln!(self.out, "{text}").map_err(io)
    }

    fn json(&mut self, value: &Value) -> Result<(), CliError> {
        let text = if self.format == Format::Jsonl {
            value.to_string()
        } else {
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        };
        self.line(&text)
    }

    fn status_cell(&self, status: RuntimeStatus) -> (String, Option<Colour>) {
        (status.to_string(), status_colour(status))
    }
}

/// `list`.
pub(crate) fn list(ctx: &mut Ctx<'_>, args: &ListArgs) -> Result<(), CliError> {
    let filter = Filter {
        statuses: args.status.clone(),
        orchestrator: args.orchestrator.clone(),
        prefix: args.prefix.clone(),
    };
    let size = usize::try_from(args.page_size).unwrap_or(10_000);
    let mut after = args.after.clone();
    let mut instances = Vec::new();
    let next = loop {
        let page = ctx.backend.list(&filter, size, after.as_deref())?;
        instances.extend(page.instances);
        match page.next {
            Some(next) if args.all => after = Some(next),
            next => break next,
        }
    };
    match ctx.format {
        Format::Json => ctx.json(&json!({
            "instances": instances.iter().map(Instance::to_json).collect::<Vec<_>>(),
            "next": next,
        })),
        Format::Jsonl => {
            for i in &instances {
                ctx.json(&i.to_json())?;
            }
            if let Some(next) = &next {
                eprintln!("next page: --after {next}");
            }
            Ok(())
        }
        Format::Table => {
            if instances.is_empty() {
                let filtered = filter != Filter::default() || args.after.is_some();
                return ctx.line(if filtered {
                    "no instances match"
                } else {
                    "no instances"
                });
            }
            let mut table = Table::new(vec![
                "ID",
                "ORCHESTRATOR",
                "STATUS",
                "CREATED",
                "UPDATED",
                "EVENTS",
            ]);
            for i in &instances {
                table.row(vec![
                    (i.id.clone(), None),
                    (i.orchestrator.clone(), None),
                    ctx.status_cell(i.status),
                    (rfc3339(i.created_at), None),
                    (rfc3339(i.updated_at), None),
                    (i.history_len.to_string(), None),
                ]);
            }
            table.print(ctx.out, ctx.colour).map_err(io)?;
            if let Some(next) = next {
                ctx.line(&format!("next page: --after {next}"))?;
            }
            Ok(())
        }
    }
}

/// `describe`.
pub(crate) fn describe(ctx: &mut Ctx<'_>, id: &str) -> Result<(), CliError> {
    let status = ctx.backend.status(id)?;
    // The input is in the first event: the rest is not read.
    let history: Vec<HistoryRecord> = ctx.backend.first_event(id)?.into_iter().collect();
    let waiting = if status.status.is_finished() {
        Vec::new()
    } else {
        ctx.backend.waiting_on(id)?
    };
    let input = input(&history);
    if ctx.format != Format::Table {
        let mut v = status.to_json();
        if let Value::Object(map) = &mut v {
            map.insert("input".to_owned(), input.unwrap_or(Value::Null));
            map.insert("waiting_on".to_owned(), Value::Array(waiting));
        }
        return ctx.json(&v);
    }
    const WIDE: usize = 200;
    let big = |v: &Value| {
        let text = short_json(v, WIDE);
        if text.ends_with('…') {
            format!("{text}  (-o json shows it whole)")
        } else {
            text
        }
    };
    let at = |t: i64| format!("{} ({})", rfc3339(t), relative(t));
    let mut rows: Vec<(&str, String, Option<Colour>)> = vec![
        ("id", status.id.clone(), None),
        ("orchestrator", status.orchestrator.clone(), None),
        (
            "status",
            status.status.to_string(),
            status_colour(status.status),
        ),
        ("created", at(status.created_at), None),
        ("updated", at(status.updated_at), None),
        ("events", status.history_len.to_string(), None),
    ];
    match &input {
        Some(v) => rows.push(("input", big(v), None)),
        None => rows.push(("input", "(not started yet)".to_owned(), Some(Colour::Dim))),
    }
    if let Some(v) = &status.output {
        rows.push(("output", big(v), None));
    }
    if let Some(v) = &status.custom_status {
        rows.push(("custom status", big(v), None));
    }
    if let Some(f) = &status.failure {
        rows.push(("failure", f.to_string(), Some(Colour::Red)));
    }
    if let Some(r) = &status.terminated {
        rows.push(("terminated", r.clone(), Some(Colour::Magenta)));
    }
    for (key, value, colour) in &rows {
        let label = format!("{key}:");
        let line = format!("{label:<15}{}", paint(value, *colour, ctx.colour));
        ctx.line(&line)?;
    }
    if status.status.is_finished() {
        return Ok(());
    }
    // Event waits are found by replaying the code: a server has it, this
    // command line on a database has not.
    let events_unknown = !ctx.backend.knows_event_waits()
        && matches!(
            status.status,
            RuntimeStatus::Running | RuntimeStatus::Pending
        );
    const UNKNOWN: &str = "event waits are found by replaying the code, which this command line has not: `describe` through --url, whose server has it, names them";
    if waiting.is_empty() {
        let what = if events_unknown {
            format!("no open call or timer: an external event (`durable raise ID EVENT` delivers one), or its next turn\n{:<15}({UNKNOWN})", "")
        } else {
            "nothing: its next turn".to_owned()
        };
        return ctx.line(&format!("{:<15}{what}", "waiting on:"));
    }
    ctx.line("waiting on:")?;
    let mut table = Table::new(vec!["  KIND", "SEQ", "WHAT", "SINCE", "SITE"]);
    for w in &waiting {
        let [kind, seq, what, since, site] = crate::waiting::row(w);
        let colour = match kind.as_str() {
            "parked" => Some(Colour::Red),
            "suspended" => Some(Colour::Yellow),
            _ => None,
        };
        table.row(vec![
            (format!("  {kind}"), colour),
            (seq, None),
            (what, None),
            (since, None),
            (site, Some(Colour::Dim)),
        ]);
    }
    table.print(ctx.out, ctx.colour).map_err(io)?;
    if events_unknown {
        ctx.line(&format!("  ({UNKNOWN})"))?;
    }
    Ok(())
}

/// `history`.
pub(crate) fn history(ctx: &mut Ctx<'_>, id: &str, follow: bool) -> Result<(), CliError> {
    if follow && ctx.format == Format::Json {
        return Err(CliError::usage(
            "--follow prints events as they come, which one JSON array cannot",
        )
        .hint("use -o jsonl with --follow: one JSON record per line"));
    }
    let records = ctx.backend.history(id, 0)?;
    if !follow {
        return match ctx.format {
            Format::Json => {
                let v = serde_json::to_value(&records).unwrap_or(Value::Null);
                ctx.json(&v)
            }
            Format::Jsonl => records.iter().try_for_each(|r| record_line(ctx, r)),
            Format::Table => {
                if records.is_empty() {
                    return ctx.line("no events yet: the instance has not run its first turn");
                }
                let mut table = Table::new(HISTORY_HEADER.to_vec());
                for r in &records {
                    table.row(history_row(r));
                }
                table.print(ctx.out, ctx.colour).map_err(io)
            }
        };
    }
    follow_history(ctx, id, records)
}

fn record_line(ctx: &mut Ctx<'_>, record: &HistoryRecord) -> Result<(), CliError> {
    let text = serde_json::to_string(record).unwrap_or_default();
    ctx.line(&text)
}

/// The minimum widths of the history table's columns when following, so
/// that later rows line up with the first.
const FOLLOW_WIDTHS: [usize; 6] = [4, 4, 24, 17, 40, 0];

/// `history --follow`: what there is, then what comes, until the instance
/// has finished and everything it recorded is printed.
fn follow_history(
    ctx: &mut Ctx<'_>,
    id: &str,
    records: Vec<HistoryRecord>,
) -> Result<(), CliError> {
    let mut table = Table::new(HISTORY_HEADER.to_vec());
    for r in &records {
        table.row(history_row(r));
    }
    let widths: Vec<usize> = table
        .widths()
        .into_iter()
        .zip(FOLLOW_WIDTHS)
        .map(|(w, min)| w.max(min))
        .collect();
    let mut next = records.last().map_or(0, |r| r.index + 1);
    if ctx.format == Format::Table {
        let header = table.header_line(&widths, ctx.colour);
        ctx.line(&header)?;
        for l in table.row_lines(&widths, ctx.colour) {
            ctx.line(&l)?;
        }
    } else {
        records.iter().try_for_each(|r| record_line(ctx, r))?;
    }
    ctx.out.flush().map_err(io)?;
    let mut pause = Duration::from_millis(50);
    let mut execution = records.first().and_then(execution_of);
    // The history length and update time last caught up with.
    let mut seen = None;
    loop {
        let status = match ctx.backend.status(id) {
            Ok(s) => s,
            Err(e) if e.code == exit::NOT_FOUND => {
                eprintln!("instance {id} was purged");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let now_seen = Some((status.history_len, status.updated_at));
        if now_seen != seen {
            let first = ctx.backend.first_event(id)?;
            let now = first.as_ref().and_then(execution_of);
            if (execution.is_some() && now.is_some() && now != execution)
                || (execution.is_none() && status.history_len < next)
            {
                // Continued as new: the new execution's history starts at 0.
                next = 0;
                if ctx.format == Format::Table {
                    ctx.line("--- continued as new ---")?;
                }
            }
            execution = now.or(execution);
            let fresh = if status.history_len > next {
                ctx.backend.history(id, next)?
            } else {
                Vec::new()
            };
            // Continued as new between the two reads: read again.
            if !fresh.is_empty()
                && ctx.backend.first_event(id)?.as_ref().and_then(execution_of) != now
            {
                continue;
            }
            // Caught up, or nothing more to read (an entity counts its
            // turns but keeps no history): look again when it changes.
            if fresh.is_empty()
                || fresh
                    .last()
                    .is_some_and(|r| r.index + 1 >= status.history_len)
            {
                seen = now_seen;
            }
            for r in &fresh {
                if ctx.format == Format::Table {
                    let mut one = Table::new(HISTORY_HEADER.to_vec());
                    one.row(history_row(r));
                    for l in one.row_lines(&widths, ctx.colour) {
                        ctx.line(&l)?;
                    }
                } else {
                    record_line(ctx, r)?;
                }
                next = r.index + 1;
            }
            ctx.out.flush().map_err(io)?;
            pause = Duration::from_millis(50);
            continue;
        }
        if status.status.is_finished() {
            return Ok(());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Which execution a history's first event starts: its `Started`'s first
/// sequence number (a continue-as-new starts another).
fn execution_of(first: &HistoryRecord) -> Option<u64> {
    match &first.event {
        durable::history::Event::Started { first_seq, .. } => Some(*first_seq),
        _ => None,
    }
}

/// `diff`: two instances' steps side by side, by sequence number.
pub(crate) fn diff(ctx: &mut Ctx<'_>, a: &str, b: &str) -> Result<(), CliError> {
    let (ha, hb) = (ctx.backend.history(a, 0)?, ctx.backend.history(b, 0)?);
    let rows = durable::diff::compare(&ha, &hb);
    let parted = rows.iter().find(|r| !r.same()).map(|r| r.seq);
    let step = |s: &Option<durable::diff::Step>| {
        s.as_ref()
            .map(|s| json!({ "kind": s.kind, "name": s.name, "site": s.site }))
    };
    match ctx.format {
        Format::Json | Format::Jsonl => {
            let rows: Vec<Value> = rows
                .iter()
                .map(
                    |r| json!({ "seq": r.seq, "same": r.same(), "a": step(&r.a), "b": step(&r.b) }),
                )
                .collect();
            ctx.json(&json!({ "a": a, "b": b, "parted_at": parted, "rows": rows }))
        }
        Format::Table => {
            let cell = |s: &Option<durable::diff::Step>| match s {
                Some(s) if s.name.is_empty() => s.kind.to_owned(),
                Some(s) => format!("{} {}", s.kind, s.name),
                None => "-".to_owned(),
            };
            let site = |s: &Option<durable::diff::Step>| {
                s.as_ref().map_or(String::new(), |s| short_site(&s.site))
            };
            ctx.line(&format!("first: {a}    second: {b}"))?;
            let mut table = Table::new(vec!["", "SEQ", "FIRST", "SITE", "SECOND", "SITE"]);
            for r in &rows {
                let mark = if r.same() {
                    (" ".to_owned(), None)
                } else {
                    ("≠".to_owned(), Some(Colour::Yellow))
                };
                table.row(vec![
                    mark,
                    (format!("#{}", r.seq), None),
                    (cell(&r.a), None),
                    (site(&r.a), Some(Colour::Dim)),
                    (cell(&r.b), None),
                    (site(&r.b), Some(Colour::Dim)),
                ]);
            }
            table.print(ctx.out, ctx.colour).map_err(io)?;
            ctx.line(&match parted {
                Some(seq) => format!("they part at #{seq}"),
                None => "they took the same steps".to_owned(),
            })
        }
    }
}

/// `raise`.
pub(crate) fn raise(
    ctx: &mut Ctx<'_>,
    id: &str,
    event: &str,
    data: Option<&str>,
    key: Option<&str>,
) -> Result<(), CliError> {
    let text = match data {
        None => "null".to_owned(),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                CliError::usage(format!("cannot read the event's data from stdin: {e}"))
            })?;
            text
        }
        Some(text) => text.to_owned(),
    };
    let data: Box<RawValue> = serde_json::from_str(text.trim()).map_err(|e| {
        CliError::usage(format!("the event's data is not JSON: {e}")).hint(
            "give JSON, quoted for the shell: '\"yes\"' for a string, '{\"approved\": true}' for an object, or nothing for null",
        )
    })?;
    ctx.backend.raise(id, event, &data, key)?;
    match ctx.format {
        Format::Table => ctx.line(&format!("raised `{event}` on {id}")),
        _ => ctx.json(&json!({ "id": id, "event": event, "key": key, "raised": true })),
    }
}

/// The reason recorded when none is given.
pub(crate) fn default_reason() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("via the durable command line, by {user}"),
        _ => "via the durable command line".to_owned(),
    }
}

/// `terminate`, `suspend` and `resume`.
pub(crate) fn steer(
    ctx: &mut Ctx<'_>,
    what: &str,
    id: &str,
    reason: Option<&str>,
) -> Result<(), CliError> {
    let reason = reason.map_or_else(default_reason, str::to_owned);
    let said = match what {
        "terminate" => {
            ctx.backend.terminate(id, &reason)?;
            format!("termination of {id} queued: it ends at its next turn, taken by a worker of its orchestrator")
        }
        "suspend" => {
            ctx.backend.suspend(id, &reason)?;
            format!("suspended {id}: it runs no turn until `durable resume {id}`")
        }
        _ => {
            ctx.backend.resume(id, &reason)?;
            format!("resumed {id}")
        }
    };
    match ctx.format {
        Format::Table => ctx.line(&format!("{said} (reason: {reason})")),
        _ => ctx.json(&json!({ "id": id, "command": what, "reason": reason, "done": true })),
    }
}

/// `purge`.
pub(crate) fn purge(ctx: &mut Ctx<'_>, args: &PurgeArgs) -> Result<(), CliError> {
    if let Some(id) = &args.id {
        return purge_one(ctx, id, args.dry_run);
    }
    let statuses = if args.status.is_empty() {
        vec![
            RuntimeStatus::Completed,
            RuntimeStatus::Failed,
            RuntimeStatus::Terminated,
        ]
    } else {
        if let Some(s) = args.status.iter().find(|s| !s.is_finished()) {
            return Err(CliError::usage(format!(
                "`{s}` instances are not finished, and only finished ones are purged"
            ))
            .hint("use --status completed, failed or terminated; terminate an instance first to purge it"));
        }
        args.status.clone()
    };
    let filter = Filter {
        statuses,
        orchestrator: args.orchestrator.clone(),
        prefix: args.prefix.clone(),
    };
    let before = args
        .older_than
        .map(|d| now_micros().saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)));
    let mut selected = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ctx.backend.list(&filter, 1_000, after.as_deref())?;
        selected.extend(
            page.instances
                .into_iter()
                .filter(|i| before.is_none_or(|b| i.updated_at < b)),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if args.dry_run {
        return print_purge(ctx, &selected, true);
    }
    if selected.is_empty() {
        return print_purge(ctx, &selected, false);
    }
    if !args.yes {
        return Err(CliError::usage(format!(
            "the filter selects {} finished instance{}, and purging deletes them and their histories for good",
            selected.len(),
            if selected.len() == 1 { "" } else { "s" }
        ))
        .hint("add --yes to purge them, or --dry-run to list them first"));
    }
    let mut purged = Vec::new();
    for instance in selected {
        match ctx.backend.purge(&instance.id) {
            Ok(()) => purged.push(instance),
            // Purged meanwhile by someone else, or replaced by a new run.
            Err(e) if e.code == exit::NOT_FOUND || e.code == exit::REFUSED => {}
            Err(e) => {
                print_purge(ctx, &purged, false)?;
                return Err(e);
            }
        }
    }
    print_purge(ctx, &purged, false)
}

fn print_purge(ctx: &mut Ctx<'_>, instances: &[Instance], dry_run: bool) -> Result<(), CliError> {
    if ctx.format != Format::Table {
        return ctx.json(&json!({
            "dry_run": dry_run,
            "purged": if dry_run { Vec::new() } else { instances.iter().map(|i| i.id.clone()).collect() },
            "instances": instances.iter().map(Instance::to_json).collect::<Vec<_>>(),
        }));
    }
    if instances.is_empty() {
        return ctx.line("no finished instance matches: nothing to purge");
    }
    let mut table = Table::new(vec!["ID", "ORCHESTRATOR", "STATUS", "FINISHED"]);
    for i in instances {
        table.row(vec![
            (i.id.clone(), None),
            (i.orchestrator.clone(), None),
            ctx.status_cell(i.status),
            (rfc3339(i.updated_at), None),
        ]);
    }
    table.print(ctx.out, ctx.colour).map_err(io)?;
    let n = instances.len();
    let s = if n == 1 { "" } else { "s" };
    if dry_run {
        ctx.line(&format!(
            "{n} instance{s} would be purged (dry run: nothing was deleted; add --yes without --dry-run to purge)"
        ))
    } else {
        ctx.line(&format!("purged {n} instance{s}"))
    }
}

fn purge_one(ctx: &mut Ctx<'_>, id: &str, dry_run: bool) -> Result<(), CliError> {
    if dry_run {
        let status = ctx.backend.status(id)?;
        if !status.status.is_finished() {
            return Err(CliError::new(
                exit::REFUSED,
                format!("cannot purge instance `{id}`: it is {}", status.status),
            )
            .hint("only finished instances are purged: terminate it first (`durable terminate ID --reason ..`) or wait for it"));
        }
        return print_purge(ctx, &[status], true);
    }
    ctx.backend.purge(id)?;
    match ctx.format {
        Format::Table => ctx.line(&format!("purged {id}")),
        _ => ctx.json(&json!({ "dry_run": false, "purged": [id] })),
    }
}

/// `wait`: the exit code from how the instance ended.
pub(crate) fn wait(ctx: &mut Ctx<'_>, id: &str, timeout: Option<Duration>) -> Result<u8, CliError> {
    let Some(status) = ctx.backend.wait(id, timeout)? else {
        let now = ctx.backend.status(id)?;
        let waited = timeout.map(crate::time::human).unwrap_or_default();
        eprintln!("{id} has not finished after {waited}: it is {}", now.status);
        if ctx.format != Format::Table {
            ctx.json(&now.to_json())?;
        }
        return Ok(exit::TIMEOUT);
    };
    let code = match status.status {
        RuntimeStatus::Completed => exit::OK,
        RuntimeStatus::Terminated => exit::TERMINATED,
        _ => exit::FAILED,
    };
    if ctx.format != Format::Table {
        ctx.json(&status.to_json())?;
        return Ok(code);
    }
    let how = match status.status {
        RuntimeStatus::Completed => status
            .output
            .as_ref()
            .map(|o| format!(": {}", short_json(o, 200)))
            .unwrap_or_default(),
        RuntimeStatus::Terminated => format!(": {}", status.terminated.as_deref().unwrap_or("")),
        _ => match (&status.failure, &status.output) {
            (Some(f), _) => format!(": {f}"),
            (None, Some(o)) => format!(": returned Err {}", short_json(o, 200)),
            _ => String::new(),
        },
    };
    let word = paint(
        &status.status.to_string(),
        status_colour(status.status),
        ctx.colour,
    );
    ctx.line(&format!("{id} {word}{}", truncate(&how, 400)))?;
    Ok(code)
}
