//! `GET /metrics`: the runtime's counters and the store's gauges in
//! Prometheus' text format (version 0.0.4).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use durable::metrics::{Histogram, BUCKETS};

use crate::error::ApiError;
use crate::Api;

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in BUCKETS.iter().zip(&h.buckets) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

pub(crate) async fn metrics(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let counts = api.client.counts(None).await?;
    let backlog = api.client.backlog().await?;
    let m = api.client.metrics();
    let mut out = String::new();
    head(
        &mut out,
        "durable_instances",
        "gauge",
        "Instances by status (entities not counted).",
    );
    // Every status, zero included: a series that vanished could not be
    // alerted on.
    for status in [
        "pending",
        "running",
        "suspended",
        "stuck",
        "completed",
        "failed",
        "terminated",
    ] {
        let n = counts
            .iter()
            .find(|(s, _)| {
                serde_json::to_value(s)
                    .ok()
                    .as_ref()
                    .and_then(|v| v.as_str())
                    == Some(status)
            })
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "durable_instances{{status=\"{status}\"}} {n}");
    }
    head(
        &mut out,
        "durable_queue_messages",
        "gauge",
        "Messages due now and not yet taken (events, results, fired timers, starts).",
    );
    let _ = writeln!(out, "durable_queue_messages {}", backlog.messages);
    head(
        &mut out,
        "durable_queue_tasks",
        "gauge",
        "Activity attempts due now and not leased by any worker.",
    );
    let _ = writeln!(out, "durable_queue_tasks {}", backlog.tasks);
    head(
        &mut out,
        "durable_turns_total",
        "counter",
        "Orchestrator turns this process committed.",
    );
    let _ = writeln!(out, "durable_turns_total {}", m.turns);
    head(
        &mut out,
        "durable_turns_refused_total",
        "counter",
        "Turns refused at commit (another process had moved the instance).",
    );
    let _ = writeln!(out, "durable_turns_refused_total {}", m.turns_refused);
    head(
        &mut out,
        "durable_turn_commit_seconds",
        "histogram",
        "How long commits of turns took (one commit holds a round's turns).",
    );
    histogram(
        &mut out,
        "durable_turn_commit_seconds",
        "",
        &m.commit_seconds,
    );
    head(
        &mut out,
        "durable_activity_attempts_total",
        "counter",
        "Activity attempts that ended, by activity.",
    );
    for (name, a) in &m.activities {
        let _ = writeln!(
            out,
            "durable_activity_attempts_total{{activity=\"{}\"}} {}",
            label(name),
            a.attempts
        );
    }
    head(
        &mut out,
        "durable_activity_failures_total",
        "counter",
        "Activity attempts that did not return a value, by activity.",
    );
    for (name, a) in &m.activities {
        let _ = writeln!(
            out,
            "durable_activity_failures_total{{activity=\"{}\"}} {}",
            label(name),
            a.failures
        );
    }
    head(
        &mut out,
        "durable_activity_seconds",
        "histogram",
        "How long activity attempts ran, by activity.",
    );
    for (name, a) in &m.activities {
        histogram(
            &mut out,
            "durable_activity_seconds",
            &format!("activity=\"{}\"", label(name)),
            &a.seconds,
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
