//! What an unfinished instance waits on, in the HTTP API's shape
//! (`GET /instances/{id}/waiting`): one JSON object per thing, with its
//! `kind`, its fields and a sentence (`text`). A local store's answer
//! (`Client::waiting_on`) is put in the same shape, so `describe` reads
//! one form whichever backend answered.

use durable::history::{Event, HistoryRecord};
use durable::Blocker;
use serde_json::Value;

use crate::render::{short_site, truncate};
use crate::time::{parse_rfc3339, relative};

/// One blocker as the HTTP API spells it.
pub(crate) fn blocker_json(b: &Blocker) -> Value {
    serde_json::to_value(b).unwrap_or(Value::Null)
}

/// A time field as `2026-.. (in 5m0s)`, or as it came.
fn when(v: &Value) -> String {
    let text = v.as_str().unwrap_or_default();
    match parse_rfc3339(text) {
        Some(at) => format!("{text} ({})", relative(at)),
        None => text.to_owned(),
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The cells of one blocker: kind, sequence number, what, since, site.
pub(crate) fn row(v: &Value) -> [String; 5] {
    let s = |key: &str| v[key].as_str().unwrap_or_default().to_owned();
    let kind = s("kind");
    let what = match kind.as_str() {
        "event" => {
            let similar = list(&v["similar"]);
            if similar.is_empty() {
                format!("`{}`", s("name"))
            } else {
                format!("`{}` (arrived under similar names: {similar})", s("name"))
            }
        }
        "timer" => format!("fires {}", when(&v["fires_at"])),
        "activity" => {
            let mut what = s("name");
            if v["running"].as_bool() == Some(true) {
                what += &format!(", attempt {} running", v["attempts"]);
            }
            if let Some(n) = v["failures"].as_u64().filter(|n| *n > 0) {
                what += &format!(", {n} failed attempts");
            }
            if let Some(e) = v["last_error"].as_str() {
                what += &format!(", last error: {e}");
            }
            if !v["next_attempt"].is_null() {
                what += &format!(", next attempt {}", when(&v["next_attempt"]));
            }
            what
        }
        "child" => format!("{} id={}", s("name"), s("id")),
        "entity" => format!("{} {}", s("entity"), s("op")),
        "lock" => list(&v["entities"]),
        "suspended" => s("reason"),
        "parked" => v["failure"]["message"]
            .as_str()
            .map_or_else(|| s("text"), str::to_owned),
        _ => s("text"),
    };
    let since = v["since"]
        .as_str()
        .and_then(parse_rfc3339)
        .map(relative)
        .unwrap_or_default();
    [
        kind,
        v["seq"]
            .as_u64()
            .map(|n| format!("#{n}"))
            .unwrap_or_default(),
        truncate(&what, 200),
        since,
        v["site"].as_str().map(short_site).unwrap_or_default(),
    ]
}

/// The input the instance was started with (from `Started`).
pub(crate) fn input(history: &[HistoryRecord]) -> Option<Value> {
    history.iter().find_map(|r| match &r.event {
        Event::Started { input, .. } => Some(
            serde_json::from_str(input.json())
                .unwrap_or_else(|_| Value::String(input.json().to_owned())),
        ),
        _ => None,
    })
}
