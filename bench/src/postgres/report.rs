//! What a `--postgres` run prints: the README's table of medians with
//! ratios to the server's commit rate, and the profile's tables.

use std::collections::BTreeMap;

use super::seq::SeqRun;
use super::store::CALLS;
use super::wire::RoundTrips;
use super::{Figures, CONNECTIONS, FANOUT, SEQ};
use crate::{median, percentile};

/// Formats `x` with thousands separators, no decimals.
fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.round());
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Prints the README's table: medians over the runs, and ratios to the
/// single-row commit rates.
pub(super) fn table(
    f: &mut Figures,
    version: &str,
    cores: usize,
    runs: usize,
    (load, load_after): (&str, &str),
) {
    let mut rate = |notify: bool, c: usize| {
        f.commits
            .get_mut(&(notify, c))
            .map_or(f64::NAN, |v| median(v))
    };
    let (one, many) = (rate(false, 1), rate(false, CONNECTIONS[1]));
    let notifying = [rate(true, 1), rate(true, CONNECTIONS[1])];
    let several = CONNECTIONS[1];
    // x / rate, or a dash where the rate was not measured.
    let ratio = |x: f64, rate: f64, digits: usize| {
        if rate.is_nan() {
            "—".to_owned()
        } else {
            format!("{:.digits$}", x / rate)
        }
    };
    println!(
        "PostgreSQL {version} on 127.0.0.1, `synchronous_commit=on`, {cores} cores shared with \
         the server; medians of {runs} runs; load average {load} at the start, {load_after} at the end.\n"
    );
    println!(
        "| workload | median | ÷ single-row commits/s, 1 connection | ÷ single-row commits/s, {several} connections |"
    );
    println!("|---|---|---|---|");
    let plain = [one, many];
    for (with, rates) in [("", plain), (" + `NOTIFY`", notifying)] {
        for (c, r) in CONNECTIONS.into_iter().zip(rates) {
            if r.is_nan() {
                continue;
            }
            println!(
                "| server alone: single-row `INSERT`{with} commits, {c} connection{} | {} commits/s | {} | {} |",
                if c == 1 { "" } else { "s" },
                thousands(r),
                ratio(r, one, 2),
                ratio(r, many, 2)
            );
        }
    }
    if !f.round_trips.is_empty() {
        let us = median(&mut f.round_trips);
        println!("| server alone: `SELECT 1` round trip, 1 connection | {us:.0} µs | — | — |");
    }
    let base = f
        .seq
        .get_mut(&1)
        .map(|v| median(&mut v.iter().map(|r| r.rate).collect::<Vec<_>>()));
    for (w, runs) in &f.seq {
        let r = median(&mut runs.iter().map(|r| r.rate).collect::<Vec<_>>());
        let scaling = base.map_or(String::new(), |b| format!(" ({:.2}× 1 worker)", r / b));
        println!(
            "| `seq`: {SEQ} × 3 activities, {w} worker process{} | {} orchestrations/s{scaling} | {} | {} |",
            if *w == 1 { "" } else { "es" },
            thousands(r),
            ratio(r, one, 3),
            ratio(r, many, 3)
        );
    }
    if !f.fanout.is_empty() {
        let secs = median(&mut f.fanout);
        let per = FANOUT as f64 / secs;
        println!(
            "| `fanout`: one instance, {} activities, 1 process | {secs:.2} s, {} activities/s | {} | {} |",
            thousands(FANOUT as f64),
            thousands(per),
            ratio(per, one, 2),
            ratio(per, many, 2)
        );
    }
    if !f.latency.is_empty() {
        let n = f.latency.len();
        let p50 = percentile(&mut f.latency, 50.0);
        let p99 = percentile(&mut f.latency, 99.0);
        // A latency against the time of one commit.
        // A latency read as a count of single-row commit times.
        let commits = if one.is_nan() {
            "—".to_owned()
        } else {
            format!(
                "p50 = {:.1} commit times, p99 = {:.1}",
                p50 * one / 1e3,
                p99 * one / 1e3
            )
        };
        println!(
            "| `latency`: start to result, one activity, 1 process ({n} samples) | p50 {p50:.2} ms, p99 {p99:.2} ms | \
             {commits} | — |"
        );
    }
    if f.seq.is_empty() {
        return;
    }
    println!(
        "\n| `seq` detail (medians) | orchestrations/s | CPU ms per orchestration: workers / server / client | machine busy | server commits per orchestration (all clients) | WAL flushes per orchestration (all clients) |"
    );
    println!("|---|---|---|---|---|---|");
    for (w, runs) in &f.seq {
        let m = |g: &dyn Fn(&SeqRun) -> f64| median(&mut runs.iter().map(g).collect::<Vec<_>>());
        let per = |x: f64| x * 1e3 / SEQ as f64;
        println!(
            "| {w} worker process{} | {} | {:.2} / {:.2} / {:.2} | {:.0}% | {:.1} | {:.1} |",
            if *w == 1 { "" } else { "es" },
            thousands(m(&|r| r.rate)),
            per(m(&|r| r.cpu.workers)),
            per(m(&|r| r.cpu.server)),
            per(m(&|r| r.cpu.client)),
            m(&|r| r.cpu.busy) * 100.0,
            m(&|r| r.commits as f64) / SEQ as f64,
            m(&|r| r.flushes as f64) / SEQ as f64,
        );
    }
}

/// Adds up the workers' `call NAME COUNT NANOS ITEMS` lines.
pub(super) fn add_calls(lines: &[String]) -> BTreeMap<String, (u64, u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let ["call", name, count, nanos, items] = f[..] {
            let e = out.entry(name.to_owned()).or_default();
            e.0 += count.parse().unwrap_or(0);
            e.1 += nanos.parse().unwrap_or(0);
            e.2 += items.parse().unwrap_or(0);
        }
    }
    out
}

/// The store calls of `calls` (all processes), per one of `n` instances.
pub(super) fn print_calls(calls: &BTreeMap<String, (u64, u64, u64)>, n: u64) {
    println!(
        "| store call | calls per instance | items per call | mean ms per call | ms per item | ms per instance |"
    );
    println!("|---|---|---|---|---|---|");
    for name in CALLS {
        let Some(&(count, nanos, items)) = calls.get(name) else {
            continue;
        };
        let c = count as f64;
        println!(
            "| {name} | {:.2} | {:.1} | {:.2} | {} | {:.2} |",
            c / n as f64,
            items as f64 / c,
            nanos as f64 / 1e6 / c,
            if items == 0 {
                "—".to_owned()
            } else {
                format!("{:.2}", nanos as f64 / 1e6 / items as f64)
            },
            nanos as f64 / 1e6 / n as f64
        );
    }
}

/// The statements of `trips`, most frequent first, per one of `n`
/// instances.
pub(super) fn print_trips(who: &str, trips: &RoundTrips, n: u64) {
    let mut rows: Vec<(&String, &u64)> = trips.by_statement.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1));
    println!("| {who}: statement | round trips per instance |");
    println!("|---|---|");
    for (sql, count) in rows.iter().take(25) {
        println!(
            "| `{}` | {:.2} |",
            sql.replace('|', "\\|"),
            **count as f64 / n as f64
        );
    }
    println!();
}
