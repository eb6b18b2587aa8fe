//! How things look to people: aligned tables, colour only on a terminal,
//! and a short line for each kind of history event.

use std::io::{IsTerminal, Write};

use durable::history::{ActivityFailure, Event, HistoryRecord, Payload};
use durable::RuntimeStatus;
use serde_json::Value;

use crate::time::rfc3339;

/// Whether to colour what goes to stdout: only a terminal, and never with
/// `NO_COLOR` set or `TERM=dumb`.
pub(crate) fn colour_stdout() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// A colour of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Colour {
    Red,
    Green,
    Yellow,
    Magenta,
    Cyan,
    Dim,
}

impl Colour {
    fn code(self) -> &'static str {
        match self {
            Self::Red => "31",
            Self::Green => "32",
            Self::Yellow => "33",
            Self::Magenta => "35",
            Self::Cyan => "36",
            Self::Dim => "2",
        }
    }
}

/// The colour a status is shown in.
pub(crate) fn status_colour(status: RuntimeStatus) -> Option<Colour> {
    match status {
        RuntimeStatus::Completed => Some(Colour::Green),
        RuntimeStatus::Failed | RuntimeStatus::Stuck => Some(Colour::Red),
        RuntimeStatus::Terminated => Some(Colour::Magenta),
        RuntimeStatus::Suspended => Some(Colour::Yellow),
        RuntimeStatus::Running => Some(Colour::Cyan),
        _ => None,
    }
}

/// Text painted in `colour` when `on`.
pub(crate) fn paint(text: &str, colour: Option<Colour>, on: bool) -> String {
    let text = printable(text);
    match colour {
        Some(c) if on => format!("\x1b[{}m{text}\x1b[0m", c.code()),
        _ => text,
    }
}

/// `text` with its control characters escaped (`\u{1b}`): data from a
/// store (a reason, a failure, an event's name) must not drive the
/// operator's terminal (clear it, set its clipboard). Newlines stay, for
/// values that span lines.
pub(crate) fn printable(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\n') {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A table: a header and rows of cells, printed with the columns aligned.
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<(String, Option<Colour>)>>,
}

impl Table {
    pub(crate) fn new(header: Vec<&'static str>) -> Self {
        Self {
            header,
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<(String, Option<Colour>)>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|(text, colour)| (printable(&text).replace('\n', "\\n"), colour))
                .collect(),
        );
    }

    /// The width of each column: its widest cell.
    pub(crate) fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, (text, _)) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(text.chars().count());
                }
            }
        }
        widths
    }

    /// The header line, for columns `widths` wide.
    pub(crate) fn header_line(&self, widths: &[usize], colour: bool) -> String {
        let cells: Vec<(String, Option<Colour>)> = self
            .header
            .iter()
            .map(|h| ((*h).to_owned(), None))
            .collect();
        let line = line(&cells, widths, false);
        if colour {
            format!("\x1b[1m{line}\x1b[0m")
        } else {
            line
        }
    }

    /// Each row's line, for columns `widths` wide.
    pub(crate) fn row_lines(&self, widths: &[usize], colour: bool) -> Vec<String> {
        self.rows.iter().map(|r| line(r, widths, colour)).collect()
    }

    /// Writes the header and the rows.
    pub(crate) fn print(
        &self,
        out: &mut (impl Write + ?Sized),
        colour: bool,
    ) -> std::io::Result<()> {
        let widths = self.widths();
        writeln!(out, "{}", self.header_line(&widths, colour))?;
        for l in self.row_lines(&widths, colour) {
            writeln!(out, "{l}")?;
        }
        Ok(())
    }
}

/// One line of cells, each padded to its column (the last one not).
fn line(cells: &[(String, Option<Colour>)], widths: &[usize], colour: bool) -> String {
    let mut out = String::new();
    for (i, (text, c)) in cells.iter().enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        out.push_str(&paint(text, *c, colour));
        if i + 1 < cells.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(text.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.trim_end().to_owned()
}

/// `text` cut to `max` characters, with `…` where it was cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A JSON value on one line, cut for a table.
pub(crate) fn short_json(value: &Value, max: usize) -> String {
    truncate(&value.to_string(), max)
}

fn short(payload: &Payload) -> String {
    // The stored text is compact JSON already; newlines in it are escaped.
    truncate(payload.json(), 60)
}

/// `file:line:col` as `file:line`.
pub(crate) fn short_site(site: &str) -> String {
    match site.rsplit_once(':') {
        Some((head, col)) if head.contains(':') && col.bytes().all(|b| b.is_ascii_digit()) => {
            head.to_owned()
        }
        _ => site.to_owned(),
    }
}

/// The event's kind (its variant's name) and the call site it carries, if
/// any (`file:line:col`).
pub(crate) fn kind_and_site(event: &Event) -> (String, Option<String>) {
    let value = serde_json::to_value(event).unwrap_or(Value::Null);
    match value {
        Value::Object(map) => match map.into_iter().next() {
            Some((kind, fields)) => {
                let site = fields
                    .get("site")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                (kind, site)
            }
            None => ("?".to_owned(), None),
        },
        Value::String(kind) => (kind, None),
        _ => ("?".to_owned(), None),
    }
}

/// How an activity call failed, in a few words.
fn activity_failure(f: &ActivityFailure) -> String {
    match f {
        ActivityFailure::Error(p) => format!("error {}", short(p)),
        ActivityFailure::Final(p) => format!("error (final) {}", short(p)),
        ActivityFailure::TimedOut(s) => format!("timed out: {}", truncate(s, 60)),
        ActivityFailure::Panic(s) => format!("panicked: {}", truncate(s, 60)),
        ActivityFailure::Aborted(s) => format!("aborted: {}", truncate(s, 60)),
        ActivityFailure::Poisoned(s) => format!("poisoned: {}", truncate(s, 60)),
        other => truncate(&format!("{other:?}"), 70),
    }
}

/// A short account of what the event says.
pub(crate) fn detail(event: &Event) -> String {
    match event {
        Event::Started { name, input, .. } => format!("{name} {}", short(input)),
        Event::ActivityScheduled {
            seq, name, input, ..
        } => format!("#{seq} {name} {}", short(input)),
        Event::ActivityCompleted { seq, output }
        | Event::ChildCompleted { seq, output }
        | Event::EntityCompleted { seq, output } => format!("#{seq} -> {}", short(output)),
        Event::ActivityFailed { seq, failure } => format!("#{seq} {}", activity_failure(failure)),
        Event::ChildScheduled { seq, name, id, .. } => format!("#{seq} {name} id={id}"),
        Event::ChildFailed { seq, failure } => {
            format!("#{seq} {}", truncate(&failure.to_string(), 70))
        }
        Event::TimerCreated { seq, fire_at, .. } => format!("#{seq} fires {}", rfc3339(*fire_at)),
        Event::SideEffect { seq, value, .. } => format!("#{seq} {}", short(value)),
        Event::TimerCancelled { seq } | Event::TimerFired { seq } | Event::LockGranted { seq } => {
            format!("#{seq}")
        }
        Event::EventRaised { name, data } => format!("{name} {}", short(data)),
        // A failed return is an `Err` value, which its JSON shows; the
        // kind's colour marks it too.
        Event::Completed { output, .. } => format!("-> {}", short(output)),
        Event::Failed { failure } => truncate(&failure.to_string(), 80),
        Event::Suspended { reason } | Event::Resumed { reason } | Event::Terminated { reason } => {
            truncate(reason, 80)
        }
        Event::EntityCalled {
            seq,
            entity,
            op,
            input,
            ..
        }
        | Event::EntitySignaled {
            seq,
            entity,
            op,
            input,
            ..
        } => format!("#{seq} {entity} {op} {}", short(input)),
        Event::EntityFailed { seq, failure } => {
            format!("#{seq} {}", truncate(&failure.to_string(), 70))
        }
        Event::LockRequested { seq, entities, .. } => format!("#{seq} {}", entities.join(" ")),
        Event::LocksReleased {
            seq,
            lock,
            entities,
        } => format!("#{seq} lock #{lock}: {}", entities.join(" ")),
        Event::Patched { seq, patch } => format!("#{seq} {patch}"),
        other => {
            let value = serde_json::to_value(other).unwrap_or(Value::Null);
            short_json(&value, 80)
        }
    }
}

/// The colour of an event's kind in the history table.
pub(crate) fn event_colour(event: &Event) -> Option<Colour> {
    match event {
        Event::Failed { .. }
        | Event::ActivityFailed { .. }
        | Event::ChildFailed { .. }
        | Event::EntityFailed { .. } => Some(Colour::Red),
        Event::Completed { failed: true, .. } => Some(Colour::Red),
        Event::Completed { .. } => Some(Colour::Green),
        Event::Terminated { .. } => Some(Colour::Magenta),
        Event::Suspended { .. } | Event::Resumed { .. } => Some(Colour::Yellow),
        Event::EventRaised { .. } => Some(Colour::Cyan),
        _ => None,
    }
}

/// The cells of one history record: index, turn, time, kind, detail, site.
pub(crate) fn history_row(record: &HistoryRecord) -> Vec<(String, Option<Colour>)> {
    let (kind, site) = kind_and_site(&record.event);
    vec![
        (record.index.to_string(), None),
        (record.turn.to_string(), None),
        (rfc3339(record.at), None),
        (kind, event_colour(&record.event)),
        (detail(&record.event), None),
        (
            site.as_deref().map(short_site).unwrap_or_default(),
            Some(Colour::Dim),
        ),
    ]
}

/// The history table's header.
pub(crate) const HISTORY_HEADER: [&str; 6] = ["#", "TURN", "TIME", "EVENT", "DETAIL", "SITE"];

#[cfg(test)]
mod escaping {
    use super::{paint, printable, Table};

    #[test]
    fn control_characters_from_data_reach_the_terminal_escaped() {
        let evil = "ok\u{1b}]52;c;ZWNobw==\u{7}\u{1b}[2J";
        let shown = printable(evil);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.starts_with("ok\\u{1b}]52"), "{shown}");
        assert!(!paint(evil, None, false).contains('\u{1b}'));
        let mut table = Table::new(vec!["A"]);
        table.row(vec![(evil.to_owned(), None)]);
        let lines = table.row_lines(&table.widths(), false);
        assert!(!lines[0].chars().any(char::is_control), "{lines:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_lose_their_column_and_tables_align() {
        assert_eq!(short_site("src/app.rs:12:9"), "src/app.rs:12");
        assert_eq!(short_site("C:\\app.rs:12:9"), "C:\\app.rs:12");
        assert_eq!(short_site("app.rs:12"), "app.rs:12");
        let mut t = Table::new(vec!["A", "LONGER"]);
        t.row(vec![("xxxx".to_owned(), None), ("y".to_owned(), None)]);
        let mut out = Vec::new();
        t.print(&mut out, false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A     LONGER\nxxxx  y\n");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
