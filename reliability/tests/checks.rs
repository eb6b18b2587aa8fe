//! The checks the crash tests rely on, shown to fail: a workload run to
//! the end on a real file passes them, and each kind of damage done to the
//! file or the effects log afterwards (a wrong output, a missing child, a
//! lost or extra side effect) is reported.

use std::path::Path;
use std::process::Command;

use durable_reliability::check::{check, Report};
use durable_reliability::workload::{generation, Kind, Spec};

const COUNT: u64 = 8;

/// Runs generation 0 of the workload to the end, in its own process.
fn run(db: &Path, effects: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_workload"))
        .arg(db)
        .arg(effects)
        .arg("0")
        .arg(COUNT.to_string())
        .status()
        .expect("the workload binary runs");
    assert!(status.success(), "the workload failed: {status}");
}

fn id_of(specs: &[Spec], kind: Kind) -> String {
    specs
        .iter()
        .find(|s| s.kind == kind)
        .map(|s| s.id.clone())
        .expect("every kind is in a generation")
}

/// `effects` rewritten: lines `drop` accepts left out, `extra` added.
fn edited(effects: &Path, to: &Path, drop: impl Fn(&str) -> bool, extra: &[String]) {
    let text = std::fs::read_to_string(effects).expect("the log reads");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !drop(l))
        .map(str::to_owned)
        .collect();
    lines.extend(extra.iter().cloned());
    std::fs::write(to, lines.join("\n") + "\n").expect("the log writes");
}

fn assert_found(report: &Report, what: &str) {
    assert!(
        report.problems.iter().any(|p| p.contains(what)),
        "expected a problem saying {what:?}, got {:#?}",
        report.problems
    );
}

#[test]
fn the_checks_pass_a_whole_run_and_report_each_kind_of_damage() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("checked.db");
    let effects = dir.path().join("effects.log");
    run(&db, &effects);
    let specs = generation(0, COUNT);
    let report = check(&db, &effects, &specs);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    let parent = id_of(&specs, Kind::Parent);
    let laps = id_of(&specs, Kind::Laps);
    let retrying = id_of(&specs, Kind::Retrying);
    let sequence = id_of(&specs, Kind::Sequence);
    assert_eq!(report.children, 3, "{report:#?}");
    assert_eq!(report.instances, specs.len() + 3);
    assert_eq!(report.earlier_calls, 3);
    assert!(report.failed_attempts >= 4, "{report:#?}");

    // A parent expected with another input: its output, its calls and every
    // child's output are wrong.
    let wrong: Vec<Spec> = specs
        .iter()
        .map(|s| Spec {
            input: if s.kind == Kind::Parent {
                s.input + 1
            } else {
                s.input
            },
            ..s.clone()
        })
        .collect();
    let report = check(&db, &effects, &wrong);
    assert_found(&report, &format!("{parent}: output"));
    assert_found(&report, &format!("{parent}:1: output"));
    assert_found(&report, "expected child with");

    let log = dir.path().join("edited.log");
    // An earlier execution's call that left no trace.
    edited(&effects, &log, |l| l.contains(&format!(" {laps}#0 ")), &[]);
    assert_found(
        &check(&db, &log, &specs),
        "calls by executions before the last",
    );
    // A child's call whose side effect never happened.
    let child_call = format!("{parent}:1#0");
    edited(
        &effects,
        &log,
        |l| l.starts_with(&format!("done {child_call} ")),
        &[],
    );
    assert_found(
        &check(&db, &log, &specs),
        &format!("{child_call}: its side effect never happened"),
    );
    // A flaky call that succeeded before its planned failures.
    edited(
        &effects,
        &log,
        |_| false,
        &[format!("done {retrying}#0 1 1")],
    );
    assert_found(&check(&db, &log, &specs), "succeeded at attempts");
    // A side effect no history accounts for, and a failure of a step.
    edited(
        &effects,
        &log,
        |_| false,
        &[
            format!("done {sequence}#99 1 1"),
            format!("fail {sequence}#0 1 1"),
        ],
    );
    let report = check(&db, &log, &specs);
    assert_found(
        &report,
        &format!("{sequence}#99: an attempt of a call no history holds"),
    );
    assert_found(&report, "failed, though its activity never fails");

    // A child gone from the file.
    let child = format!("{parent}:2");
    let conn = rusqlite::Connection::open(&db).expect("the database opens");
    conn.execute("DELETE FROM history WHERE instance = ?1", [&child])
        .expect("deletes");
    conn.execute("DELETE FROM instances WHERE id = ?1", [&child])
        .expect("deletes");
    drop(conn);
    let report = check(&db, &effects, &specs);
    assert_found(&report, &format!("{child}: missing"));
    assert_found(&report, "instances stored");
}
