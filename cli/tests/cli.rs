//! The `durable` binary run for real (assert_cmd) against a real database:
//! a SQLite file prepared in a temp dir by a runtime in this process, then
//! read and steered by the binary, sometimes while that runtime still runs
//! (SQLite serves both processes). Also through `--url` against the HTTP
//! API served in this process, on PostgreSQL when a server is reachable,
//! and `check` with and without registrations.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use assert_cmd::assert::Assert;
use assert_cmd::Command;
use durable::history::Event;
use durable::{activity, orchestrator, ActivityError, Builder, Client, Context, Runtime};
use serde_json::Value;

/// How long a test waits for anything before it fails: generous, so that a
/// loaded machine makes a test slower, never makes it fail.
const PATIENCE: Duration = Duration::from_secs(60);

/// The pause between two looks at state being waited for.
const LOOK_AGAIN: Duration = Duration::from_millis(10);

// ---- the workflows ----------------------------------------------------------

#[activity]
async fn double(x: u64) -> u64 {
    x * 2
}

/// Completes: one activity call.
#[orchestrator]
async fn doubler(ctx: Context, x: u64) -> u64 {
    ctx.call(double, x).await.unwrap_or_default()
}

/// Waits for the event `approve` (its data: who approved).
#[orchestrator]
async fn approval(ctx: Context, order: String) -> String {
    ctx.set_custom_status("waiting for approval");
    let by: String = ctx.wait_event("approve").await;
    format!("{order} approved by {by}")
}

/// Never returns while the runtime runs.
#[activity]
async fn stall(x: u64) -> u64 {
    std::future::pending::<()>().await;
    x
}

/// Waits on an activity and an hour's timer at once.
#[orchestrator]
async fn stalled(ctx: Context, x: u64) -> u64 {
    let (called, ()) =
        durable::join(ctx.call(stall, x), ctx.sleep(Duration::from_secs(3600))).await;
    called.unwrap_or_default()
}

#[activity]
async fn refuse(reason: String) -> Result<(), String> {
    Err(reason)
}

/// Fails: returns its activity's error.
#[orchestrator]
async fn failing(ctx: Context, reason: String) -> Result<(), String> {
    match ctx.call(refuse, reason).await {
        Ok(()) => Ok(()),
        Err(ActivityError::Failed(e)) => Err(e),
        Err(other) => Err(format!("{other:?}")),
    }
}

fn register(builder: Builder) -> Builder {
    builder
        .activity(double)
        .activity(stall)
        .activity(refuse)
        .orchestrator(doubler)
        .orchestrator(approval)
        .orchestrator(stalled)
        .orchestrator(failing)
}

// ---- the fixture ------------------------------------------------------------

/// A database with five instances: `done-1` (doubler 21 = 42) and `done-2`
/// completed, `wait-1` waiting for `approve`, `stall-1` waiting on an
/// activity and a timer, `fail-1` failed.
struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
    threads: tokio::runtime::Runtime,
    runtime: Option<Runtime>,
}

fn threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio starts")
}

fn builder(db: &Path) -> Builder {
    register(Runtime::builder())
        .sqlite(db)
        .poll_interval(Duration::from_millis(50))
        .shutdown_grace(Duration::from_millis(10))
}

/// Waits until `ready` holds, failing the test after [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !ready().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(LOOK_AGAIN).await;
    }
}

async fn history_has(client: &Client, id: &str, pred: impl Fn(&Event) -> bool) -> bool {
    client
        .history(id)
        .await
        .is_ok_and(|h| h.iter().any(|r| pred(&r.event)))
}

/// Starts the five instances on `builder`'s store and waits until each is
/// where the tests expect it.
async fn populate(runtime: &Runtime) {
    let client = runtime.client();
    let done1 = client.start_with_id(doubler, "done-1", 21).await.unwrap();
    let done2 = client.start_with_id(doubler, "done-2", 2).await.unwrap();
    client
        .start_with_id(approval, "wait-1", "order-1".to_owned())
        .await
        .unwrap();
    client.start_with_id(stalled, "stall-1", 7).await.unwrap();
    let failed = client
        .start_with_id(failing, "fail-1", "no stock".to_owned())
        .await
        .unwrap();
    assert_eq!(done1.result().await.unwrap(), 42);
    assert_eq!(done2.result().await.unwrap(), 4);
    assert_eq!(failed.result().await.unwrap(), Err("no stock".to_owned()));
    until("wait-1 to run its first turn", || async {
        history_has(&client, "wait-1", |e| matches!(e, Event::Started { .. })).await
    })
    .await;
    until("stall-1 to schedule its activity and timer", || async {
        history_has(&client, "stall-1", |e| {
            matches!(e, Event::ActivityScheduled { .. })
        })
        .await
            && history_has(&client, "stall-1", |e| {
                matches!(e, Event::TimerCreated { .. })
            })
            .await
    })
    .await;
}

impl Fixture {
    /// The database, made by a runtime that is shut down again.
    fn new() -> Self {
        let mut f = Self::live();
        f.stop();
        f
    }

    /// The database, with the runtime that made it still running.
    fn live() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = dir.path().join("app.db");
        let threads = threads();
        let runtime = threads.block_on(async {
            let runtime = builder(&db).start().await.expect("the runtime starts");
            populate(&runtime).await;
            runtime
        });
        Self {
            dir,
            db,
            threads,
            runtime: Some(runtime),
        }
    }

    /// Starts a runtime with the workflows on the database again.
    fn start(&mut self) {
        assert!(self.runtime.is_none());
        let runtime = self
            .threads
            .block_on(builder(&self.db).start())
            .expect("the runtime starts again");
        self.runtime = Some(runtime);
    }

    /// Shuts the runtime down.
    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            self.threads
                .block_on(runtime.shutdown())
                .expect("a clean shutdown");
        }
    }

    /// The running runtime's client.
    fn client(&self) -> Client {
        self.runtime.as_ref().expect("a running runtime").client()
    }

    /// Runs the binary on the fixture's database.
    fn durable(&self, args: &[&str]) -> Assert {
        let mut all = vec!["--db", self.db.to_str().expect("a UTF-8 temp path")];
        all.extend_from_slice(args);
        durable(&all)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            let _guard = self.threads.enter();
            drop(runtime);
        }
        let _ = &self.dir;
    }
}

/// The binary with `args`, in an environment without the `DURABLE_*`
/// variables of whoever runs the tests.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_durable"));
    for var in [
        "DURABLE_DB",
        "DURABLE_POSTGRES",
        "DURABLE_SCHEMA",
        "DURABLE_URL",
        "DURABLE_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1").args(args).timeout(PATIENCE);
    cmd
}

fn durable(args: &[&str]) -> Assert {
    command(args).assert()
}

fn stdout(a: &Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn stderr(a: &Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn json(a: &Assert) -> Value {
    let text = stdout(a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts exit `code`; on a mismatch shows both streams.
#[track_caller]
fn code(a: Assert, code: i32) -> Assert {
    let got = a.get_output().status.code();
    assert_eq!(
        got,
        Some(code),
        "exit code\nstdout:\n{}\nstderr:\n{}",
        stdout(&a),
        stderr(&a)
    );
    a
}

/// The ids in a `list` table (the first column, header and footer left out).
fn listed_ids(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("next page:"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn next_token(table: &str) -> Option<String> {
    table
        .lines()
        .find_map(|l| l.strip_prefix("next page: --after "))
        .map(str::to_owned)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

const ALL: [&str; 5] = ["done-1", "done-2", "fail-1", "stall-1", "wait-1"];

// ---- list -------------------------------------------------------------------

#[test]
fn list_shows_every_instance_with_filters_and_pages() {
    let f = Fixture::new();
    let all = code(f.durable(&["list"]), 0);
    let table = stdout(&all);
    assert!(
        table.lines().next().unwrap().starts_with("ID"),
        "a header: {table}"
    );
    for word in [
        "ORCHESTRATOR",
        "STATUS",
        "CREATED",
        "completed",
        "failed",
        "running",
        "doubler",
    ] {
        assert!(table.contains(word), "{word} in {table}");
    }
    assert_eq!(sorted(listed_ids(&table)), ALL);
    assert!(next_token(&table).is_none(), "one page: {table}");
    assert!(
        !table.contains('\x1b'),
        "no colour off a terminal: {table:?}"
    );

    let completed = stdout(&code(f.durable(&["list", "--status", "completed"]), 0));
    assert_eq!(sorted(listed_ids(&completed)), ["done-1", "done-2"]);
    let some = stdout(&code(f.durable(&["list", "-s", "failed,running"]), 0));
    assert_eq!(sorted(listed_ids(&some)), ["fail-1", "stall-1", "wait-1"]);
    let by_name = stdout(&code(f.durable(&["list", "--orchestrator", "approval"]), 0));
    assert_eq!(listed_ids(&by_name), ["wait-1"]);
    let by_prefix = stdout(&code(f.durable(&["list", "--prefix", "done-"]), 0));
    assert_eq!(sorted(listed_ids(&by_prefix)), ["done-1", "done-2"]);
    let none = stdout(&code(f.durable(&["list", "--prefix", "nothing-"]), 0));
    assert_eq!(none.trim(), "no instances match");

    // Pages of 2, each printing the token of the next.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["list", "--page-size", "2"];
        if let Some(token) = &after {
            args.extend(["--after", token.as_str()]);
        }
        let page = stdout(&code(f.durable(&args), 0));
        let ids = listed_ids(&page);
        assert!(ids.len() <= 2, "{page}");
        seen.extend(ids);
        pages += 1;
        match next_token(&page) {
            Some(token) => after = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(sorted(seen), ALL, "every instance once across the pages");

    let page = json(&code(
        f.durable(&["-o", "json", "list", "--page-size", "2"]),
        0,
    ));
    assert_eq!(page["instances"].as_array().unwrap().len(), 2, "{page}");
    let token = page["next"].as_str().expect("a next token").to_owned();
    let first = &page["instances"][0];
    for field in [
        "id",
        "orchestrator",
        "status",
        "created_at",
        "updated_at",
        "history_len",
    ] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }
    let second = json(&code(
        f.durable(&[
            "list",
            "--page-size",
            "2",
            "--after",
            &token,
            "--output",
            "json",
        ]),
        0,
    ));
    assert_ne!(second["instances"][0]["id"], first["id"]);

    let every = json(&code(
        f.durable(&["list", "--all", "--page-size", "2", "-o", "json"]),
        0,
    ));
    assert_eq!(every["instances"].as_array().unwrap().len(), 5);
    assert!(every["next"].is_null());
    let lines = stdout(&code(f.durable(&["list", "-o", "jsonl"]), 0));
    assert_eq!(lines.lines().count(), 5);
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        assert!(ALL.contains(&v["id"].as_str().unwrap()));
    }

    let bad = code(f.durable(&["list", "--after", "nonsense"]), 64);
    assert!(
        stderr(&bad).contains("invalid continuation token"),
        "{}",
        stderr(&bad)
    );
    let bad = code(f.durable(&["list", "--status", "sleeping"]), 64);
    assert!(
        stderr(&bad).contains("pending, running"),
        "{}",
        stderr(&bad)
    );
    code(f.durable(&["list", "--page-size", "0"]), 64);
}

// ---- describe ---------------------------------------------------------------

/// Retries an hour apart, so it stays between attempts.
#[orchestrator]
async fn retrying(ctx: Context, reason: String) -> Result<(), String> {
    let policy = durable::RetryPolicy::attempts(5)
        .backoff(Duration::from_secs(3_600))
        .max_backoff(Duration::from_secs(3_600))
        .jitter(0.0);
    ctx.call_with_retry(refuse, reason, policy)
        .await
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn describe_shows_a_retrying_activitys_attempts_and_last_error() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("retry.db");
    let threads = threads();
    threads.block_on(async {
        let runtime = builder(&db).orchestrator(retrying).start().await.unwrap();
        let client = runtime.client();
        client
            .start_with_id(retrying, "retry-1", "card declined".to_owned())
            .await
            .unwrap();
        until("the first attempt to fail", || async {
            client.waiting_on("retry-1").await.is_ok_and(|w| {
                w.iter()
                    .any(|b| matches!(b, durable::Blocker::Activity { failures: 1, .. }))
            })
        })
        .await;
        runtime.shutdown().await.unwrap();
    });
    let db = db.to_str().expect("a UTF-8 temp path");
    let out = stdout(&code(durable(&["--db", db, "describe", "retry-1"]), 0));
    for word in [
        "refuse",
        "1 failed attempts",
        "last error: \"card declined\"",
        "next attempt",
    ] {
        assert!(out.contains(word), "{word} in:\n{out}");
    }
    let v = json(&code(
        durable(&["--db", db, "-o", "json", "describe", "retry-1"]),
        0,
    ));
    let text = v.to_string();
    assert!(text.contains("card declined"), "{text}");
}

#[test]
fn describe_shows_status_input_output_and_what_it_waits_on() {
    let f = Fixture::new();
    let stuck = stdout(&code(f.durable(&["describe", "stall-1"]), 0));
    for word in [
        "stall-1",
        "stalled",
        "running",
        "input:",
        "7",
        "waiting on:",
        "activity",
        "stall",
        "timer",
        "fires",
        "tests/cli.rs:",
    ] {
        assert!(stuck.contains(word), "{word} in:\n{stuck}");
    }
    // The source line of both calls, without the column.
    let sites: Vec<&str> = stuck
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|w| w.contains("tests/cli.rs:"))
        .collect();
    assert_eq!(sites.len(), 2, "{stuck}");
    for site in sites {
        let line = site.rsplit(':').next().unwrap();
        assert!(line.parse::<u32>().is_ok(), "file:line, {site}");
        assert_eq!(site.matches(':').count(), 1, "no column: {site}");
    }

    let done = stdout(&code(f.durable(&["describe", "done-1"]), 0));
    for word in ["completed", "input:", "21", "output:", "42"] {
        assert!(done.contains(word), "{word} in:\n{done}");
    }
    assert!(!done.contains("waiting on"), "{done}");

    let waiting = stdout(&code(f.durable(&["describe", "wait-1"]), 0));
    for word in [
        "\"order-1\"",
        "custom status:",
        "waiting for approval",
        "external event",
    ] {
        assert!(waiting.contains(word), "{word} in:\n{waiting}");
    }
    let failed = stdout(&code(f.durable(&["describe", "fail-1"]), 0));
    assert!(
        failed.contains("failed") && failed.contains("no stock"),
        "{failed}"
    );

    let v = json(&code(f.durable(&["-o", "json", "describe", "stall-1"]), 0));
    assert_eq!(v["status"], "running");
    assert_eq!(v["input"], 7);
    let pending = v["waiting_on"].as_array().expect("waiting_on");
    let kinds: Vec<&str> = pending
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["activity", "timer"], "{v}");
    assert_eq!(pending[0]["name"], "stall");
    assert!(pending[1]["fires_at"].is_string());
    for p in pending {
        assert!(p["site"].as_str().unwrap().contains("tests/cli.rs:"), "{p}");
    }
    let v = json(&code(f.durable(&["describe", "done-1", "-o", "json"]), 0));
    assert_eq!(
        (v["output"].clone(), v["input"].clone()),
        (42.into(), 21.into())
    );
    assert_eq!(v["waiting_on"], Value::Array(Vec::new()));

    let unknown = code(f.durable(&["describe", "no-such-id"]), 4);
    assert!(
        stderr(&unknown).contains("`no-such-id` not found"),
        "{}",
        stderr(&unknown)
    );
    assert!(
        stderr(&unknown).contains("durable list"),
        "what to do: {}",
        stderr(&unknown)
    );
}

// ---- history ----------------------------------------------------------------

#[test]
fn history_prints_a_table_json_and_jsonl_with_sites() {
    let f = Fixture::new();
    let table = stdout(&code(f.durable(&["history", "done-1"]), 0));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["#", "TURN", "TIME", "EVENT", "DETAIL", "SITE"]);
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows[0].starts_with("0 ") && rows[0].contains("Started"),
        "{table}"
    );
    let scheduled = rows
        .iter()
        .find(|r| r.contains("ActivityScheduled"))
        .expect("the activity call");
    assert!(
        scheduled.contains("double") && scheduled.contains("tests/cli.rs:"),
        "{scheduled}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("ActivityCompleted") && r.contains("42")),
        "{table}"
    );
    assert!(rows.last().unwrap().contains("Completed"), "{table}");

    let array = json(&code(f.durable(&["history", "done-1", "-o", "json"]), 0));
    let records = array.as_array().expect("one array");
    assert_eq!(records.len(), rows.len());
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["index"], i as u64);
        assert!(r["turn"].is_u64() && r["at"].is_i64(), "{r}");
    }
    assert!(records[0]["event"]["Started"].is_object(), "{}", records[0]);
    let site = records
        .iter()
        .find_map(|r| r["event"]["ActivityScheduled"]["site"].as_str())
        .expect("a site");
    assert!(site.contains("tests/cli.rs:"), "{site}");

    let jsonl = stdout(&code(f.durable(&["history", "done-1", "-o", "jsonl"]), 0));
    let parsed: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(&parsed, records);

    let timer = stdout(&code(f.durable(&["history", "stall-1"]), 0));
    assert!(
        timer.contains("TimerCreated") && timer.contains("fires"),
        "{timer}"
    );

    code(f.durable(&["history", "no-such-id"]), 4);
    let refused = code(
        f.durable(&["history", "done-1", "--follow", "-o", "json"]),
        64,
    );
    assert!(stderr(&refused).contains("jsonl"), "{}", stderr(&refused));
    // A finished instance: --follow prints it all and ends.
    let followed = stdout(&code(
        f.durable(&["history", "done-1", "--follow", "-o", "jsonl"]),
        0,
    ));
    assert_eq!(followed, jsonl);
}

#[test]
fn history_follow_prints_new_events_until_the_instance_finishes() {
    let f = Fixture::live();
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_durable"))
        .args([
            "--db",
            f.db.to_str().unwrap(),
            "history",
            "wait-1",
            "--follow",
            "-o",
            "jsonl",
        ])
        .env_remove("DURABLE_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Raised once the follower printed what there was: its first line.
    let stdout = follow.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    assert!(first.contains("Started"), "{first}");
    f.threads
        .block_on(f.client().raise_event("wait-1", "approve", "ada"))
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = follow.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        rest.contains("EventRaised") && rest.contains("\"ada\""),
        "{rest}"
    );
    let last: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["event"]["Completed"]["output"],
        "order-1 approved by ada"
    );
}

/// Waits for `go`, then continues as new into a longer execution.
#[orchestrator]
async fn grows(ctx: Context, round: u64) -> u64 {
    if round == 0 {
        let _: () = ctx.wait_event("go").await;
        return ctx.continue_as_new(1).await;
    }
    let mut sum = 0;
    for i in 0..3 {
        sum += ctx.call(double, i).await.unwrap_or(0);
    }
    sum
}

#[test]
fn history_follow_starts_again_when_the_instance_continues_as_new() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("grow.db");
    let threads = threads();
    let runtime = threads.block_on(async {
        let runtime = builder(&db).orchestrator(grows).start().await.unwrap();
        let client = runtime.client();
        client.start_with_id(grows, "grow-1", 0).await.unwrap();
        until("grow-1 to run its first turn", || async {
            history_has(&client, "grow-1", |e| matches!(e, Event::Started { .. })).await
        })
        .await;
        runtime
    });
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_durable"))
        .args([
            "--db",
            db.to_str().unwrap(),
            "history",
            "grow-1",
            "--follow",
            "-o",
            "jsonl",
        ])
        .env_remove("DURABLE_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = follow.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    assert!(first.contains("Started"), "{first}");
    threads
        .block_on(runtime.client().raise_event("grow-1", "go", ()))
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(follow.wait().unwrap().success());
    // The new execution from its start: its `Started` (round 1) first.
    let lines: Vec<Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let started = lines
        .iter()
        .position(|l| l["event"]["Started"]["input"] == 1)
        .unwrap_or_else(|| panic!("the second execution's Started in:\n{rest}"));
    assert_eq!(lines[started]["index"], 0, "{rest}");
    let last = lines.last().unwrap();
    assert_eq!(last["event"]["Completed"]["output"], 6, "{rest}");
    threads.block_on(runtime.shutdown()).unwrap();
}

// ---- raise and wait ----------------------------------------------------------

#[test]
fn raise_then_wait_while_a_runtime_runs_the_instance() {
    let f = Fixture::live();
    let raised = code(f.durable(&["raise", "wait-1", "approve", r#""ada""#]), 0);
    assert!(
        stdout(&raised).contains("raised `approve` on wait-1"),
        "{}",
        stdout(&raised)
    );
    let waited = code(f.durable(&["wait", "wait-1", "--timeout", "60s"]), 0);
    assert!(
        stdout(&waited).contains("wait-1 completed: \"order-1 approved by ada\""),
        "{}",
        stdout(&waited)
    );
    let history = stdout(&code(f.durable(&["history", "wait-1"]), 0));
    assert!(
        history.contains("EventRaised") && history.contains("approve \"ada\""),
        "{history}"
    );

    let finished = code(f.durable(&["raise", "wait-1", "approve", r#""bob""#]), 5);
    assert!(
        stderr(&finished).contains("already finished"),
        "{}",
        stderr(&finished)
    );
    let malformed = code(f.durable(&["raise", "stall-1", "approve", "{oops"]), 64);
    assert!(
        stderr(&malformed).contains("not JSON"),
        "{}",
        stderr(&malformed)
    );
    assert!(
        stderr(&malformed).contains("'\"yes\"'"),
        "how to quote: {}",
        stderr(&malformed)
    );
    let bare = code(f.durable(&["raise", "stall-1", "approve", "yes"]), 64);
    assert!(stderr(&bare).contains("not JSON"), "{}", stderr(&bare));
    code(f.durable(&["raise", "no-such-id", "approve"]), 4);

    // With a key, at most once; data from stdin; none is null.
    code(
        f.durable(&["raise", "stall-1", "note", "1", "--key", "k1"]),
        0,
    );
    code(
        f.durable(&["raise", "stall-1", "note", "2", "--key", "k1"]),
        0,
    );
    code(
        command(&[
            "--db",
            f.db.to_str().unwrap(),
            "raise",
            "stall-1",
            "piped",
            "-",
        ])
        .write_stdin(r#"{"a": [1, 2]}"#)
        .assert(),
        0,
    );
    code(f.durable(&["raise", "stall-1", "bare"]), 0);
    let client = f.client();
    f.threads
        .block_on(until("the events to reach stall-1's history", || async {
            history_has(
                &client,
                "stall-1",
                |e| matches!(e, Event::EventRaised { name, .. } if name == "bare"),
            )
            .await
        }));
    let history = json(&code(f.durable(&["history", "stall-1", "-o", "json"]), 0));
    let raised: Vec<(String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["event"].get("EventRaised"))
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["data"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        raised,
        [
            ("note".to_owned(), "1".to_owned()),
            ("piped".to_owned(), r#"{"a":[1,2]}"#.to_owned()),
            ("bare".to_owned(), "null".to_owned()),
        ]
    );
}

#[test]
fn wait_exit_codes_tell_how_the_instance_ended() {
    let mut f = Fixture::new();
    let ok = code(f.durable(&["wait", "done-1"]), 0);
    assert!(
        stdout(&ok).contains("done-1 completed: 42"),
        "{}",
        stdout(&ok)
    );
    let failed = code(f.durable(&["wait", "fail-1"]), 1);
    assert!(
        stdout(&failed).contains("fail-1 failed"),
        "{}",
        stdout(&failed)
    );
    let v = json(&code(f.durable(&["wait", "fail-1", "-o", "json"]), 1));
    assert_eq!(v["status"], "failed");
    let timeout = code(f.durable(&["wait", "wait-1", "--timeout", "200ms"]), 3);
    assert!(
        stderr(&timeout).contains("has not finished after 200ms"),
        "{}",
        stderr(&timeout)
    );
    code(f.durable(&["wait", "no-such-id", "--timeout", "1s"]), 4);
    code(f.durable(&["wait", "wait-1", "--timeout", "soon"]), 64);

    f.start();
    code(f.durable(&["terminate", "wait-1", "--reason", "test"]), 0);
    let terminated = code(f.durable(&["wait", "wait-1", "--timeout", "60s"]), 2);
    assert!(
        stdout(&terminated).contains("wait-1 terminated: test"),
        "{}",
        stdout(&terminated)
    );
}

// ---- terminate, suspend, resume ----------------------------------------------

#[test]
fn terminate_suspend_and_resume_record_their_reasons() {
    let f = Fixture::live();
    let said = code(
        f.durable(&["suspend", "wait-1", "--reason", "maintenance window"]),
        0,
    );
    assert!(
        stdout(&said).contains("suspended wait-1"),
        "{}",
        stdout(&said)
    );
    let described = stdout(&code(f.durable(&["describe", "wait-1"]), 0));
    assert!(
        described.contains("suspended") && described.contains("maintenance window"),
        "{described}"
    );
    let again = code(f.durable(&["suspend", "wait-1", "--reason", "twice"]), 5);
    assert!(
        stderr(&again).contains("cannot suspend"),
        "{}",
        stderr(&again)
    );

    code(
        f.durable(&["resume", "wait-1", "-r", "maintenance over"]),
        0,
    );
    code(f.durable(&["resume", "wait-1", "--reason", "twice"]), 5);

    let v = json(&code(
        f.durable(&[
            "terminate",
            "wait-1",
            "--reason",
            "customer cancelled",
            "-o",
            "json",
        ]),
        0,
    ));
    assert_eq!(v["reason"], "customer cancelled");
    code(f.durable(&["wait", "wait-1", "--timeout", "60s"]), 2);
    let history = stdout(&code(f.durable(&["history", "wait-1"]), 0));
    for (kind, reason) in [
        ("Suspended", "maintenance window"),
        ("Resumed", "maintenance over"),
        ("Terminated", "customer cancelled"),
    ] {
        assert!(
            history
                .lines()
                .any(|l| l.contains(kind) && l.contains(reason)),
            "{kind} {reason} in\n{history}"
        );
    }
    let described = stdout(&code(f.durable(&["describe", "wait-1"]), 0));
    assert!(
        described.contains("terminated:") && described.contains("customer cancelled"),
        "{described}"
    );

    let finished = code(f.durable(&["terminate", "done-1", "--reason", "late"]), 5);
    assert!(
        stderr(&finished).contains("already finished"),
        "{}",
        stderr(&finished)
    );
    code(f.durable(&["suspend", "no-such-id"]), 4);
    // No reason given: one is recorded all the same.
    code(f.durable(&["suspend", "stall-1"]), 0);
    let history = stdout(&code(f.durable(&["history", "stall-1"]), 0));
    assert!(
        history.contains("via the durable command line"),
        "{history}"
    );
}

// ---- purge ------------------------------------------------------------------

#[test]
fn purge_one_or_by_filter_with_dry_run_and_yes() {
    let f = Fixture::new();
    let running = code(f.durable(&["purge", "wait-1"]), 5);
    assert!(
        stderr(&running).contains("terminate it first"),
        "{}",
        stderr(&running)
    );
    code(f.durable(&["purge", "wait-1", "--dry-run"]), 5);

    let dry = stdout(&code(f.durable(&["purge", "done-1", "--dry-run"]), 0));
    assert!(
        dry.contains("done-1") && dry.contains("would be purged"),
        "{dry}"
    );
    code(f.durable(&["describe", "done-1"]), 0);
    let purged = stdout(&code(f.durable(&["purge", "done-1"]), 0));
    assert_eq!(purged.trim(), "purged done-1");
    code(f.durable(&["describe", "done-1"]), 4);
    code(f.durable(&["purge", "done-1"]), 4);

    let refused = code(f.durable(&["purge", "--status", "completed"]), 64);
    assert!(
        stderr(&refused).contains("selects 1 finished instance"),
        "{}",
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains("add --yes"),
        "{}",
        stderr(&refused)
    );
    code(f.durable(&["describe", "done-2"]), 0);
    let dry = stdout(&code(
        f.durable(&["purge", "--status", "completed", "--dry-run"]),
        0,
    ));
    assert!(dry.contains("done-2") && !dry.contains("fail-1"), "{dry}");
    let dry = json(&code(f.durable(&["purge", "--dry-run", "-o", "json"]), 0));
    let ids: Vec<&str> = dry["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        sorted(ids.iter().map(|s| (*s).to_owned()).collect()),
        ["done-2", "fail-1"]
    );
    assert_eq!(dry["purged"], Value::Array(Vec::new()));
    let unfinished = code(f.durable(&["purge", "--status", "running", "--yes"]), 64);
    assert!(
        stderr(&unfinished).contains("not finished"),
        "{}",
        stderr(&unfinished)
    );

    let old = stdout(&code(
        f.durable(&["purge", "--older-than", "1h", "--yes"]),
        0,
    ));
    assert!(old.contains("nothing to purge"), "{old}");
    let purged = stdout(&code(
        f.durable(&[
            "purge",
            "--status",
            "completed",
            "--orchestrator",
            "doubler",
            "--older-than",
            "0s",
            "--yes",
        ]),
        0,
    ));
    assert!(
        purged.contains("done-2") && purged.contains("purged 1 instance"),
        "{purged}"
    );
    let v = json(&code(f.durable(&["purge", "-y", "-o", "json"]), 0));
    assert_eq!(v["purged"], serde_json::json!(["fail-1"]));
    let left = stdout(&code(f.durable(&["list"]), 0));
    assert_eq!(sorted(listed_ids(&left)), ["stall-1", "wait-1"]);
}

// ---- bad input ---------------------------------------------------------------

#[test]
fn bad_input_gets_a_clear_error_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let a = code(durable(&["--db", missing.to_str().unwrap(), "list"]), 69);
    assert!(
        stderr(&a).contains("there is no database at"),
        "{}",
        stderr(&a)
    );
    assert!(!missing.exists(), "no database was created");

    let a = code(durable(&["list"]), 64);
    assert!(
        stderr(&a).contains("no store given") && stderr(&a).contains("--db"),
        "{}",
        stderr(&a)
    );

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let a = code(durable(&["--db", empty.to_str().unwrap(), "list"]), 69);
    assert!(
        stderr(&a).contains("holds no durable database"),
        "{}",
        stderr(&a)
    );
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "left empty");

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, just some text that is long enough",
    )
    .unwrap();
    let a = code(durable(&["--db", text.to_str().unwrap(), "list"]), 69);
    assert!(stderr(&a).contains("cannot open"), "{}", stderr(&a));

    let a = code(
        durable(&["--db", "a.db", "--url", "http://127.0.0.1:1", "list"]),
        64,
    );
    assert!(stderr(&a).contains("give one"), "{}", stderr(&a));
    code(durable(&["--db", "a.db", "--schema", "s", "list"]), 64);
    code(durable(&["frobnicate"]), 64);
    code(durable(&["describe"]), 64);
    code(durable(&["--help"]), 0);

    // The environment names the store too.
    let f = Fixture::new();
    let a = code(
        command(&["list", "--prefix", "done-"])
            .env("DURABLE_DB", &f.db)
            .assert(),
        0,
    );
    assert_eq!(sorted(listed_ids(&stdout(&a))), ["done-1", "done-2"]);
    let a = code(
        command(&["list"])
            .env("DURABLE_DB", &f.db)
            .env("DURABLE_URL", "http://127.0.0.1:1")
            .assert(),
        64,
    );
    assert!(
        stderr(&a).contains("DURABLE_DB and DURABLE_URL"),
        "{}",
        stderr(&a)
    );
}

// ---- check ------------------------------------------------------------------

#[test]
fn the_stock_binary_explains_that_check_needs_registrations() {
    let f = Fixture::new();
    let a = code(f.durable(&["check"]), 64);
    let err = stderr(&a);
    assert!(err.contains("no registrations"), "{err}");
    assert!(err.contains("durable_cli::run("), "how: {err}");
    assert!(err.contains("src/bin/durable.rs"), "where: {err}");
    code(durable(&["check"]), 64);
}

#[test]
fn check_with_registrations_finds_instances_this_build_cannot_replay() {
    let f = Fixture::new();
    let db = f.db.to_str().unwrap().to_owned();
    let run = |builder: Builder, extra: &[&str]| {
        let mut args = vec!["durable", "--db", db.as_str(), "check"];
        args.extend_from_slice(extra);
        durable_cli::run_with(Some(builder), args)
    };
    assert_eq!(run(register(Runtime::builder()), &[]), ExitCode::from(0));
    assert_eq!(
        run(register(Runtime::builder()), &["-o", "json"]),
        ExitCode::from(0)
    );
    // A build without `approval` cannot replay wait-1.
    let without = Runtime::builder()
        .activity(double)
        .activity(stall)
        .orchestrator(doubler)
        .orchestrator(stalled);
    assert_eq!(run(without, &[]), ExitCode::from(1));
    // A store on the builder is used when the command names none.
    let on_builder = register(Runtime::builder()).sqlite(&f.db);
    assert_eq!(
        durable_cli::run_with(Some(on_builder), ["durable", "check"]),
        ExitCode::from(0)
    );
    let missing = f.dir.path().join("missing.db");
    let args = ["durable", "--db", missing.to_str().unwrap(), "check"];
    assert_eq!(
        durable_cli::run_with(Some(register(Runtime::builder())), args),
        ExitCode::from(69)
    );
    assert_eq!(
        durable_cli::run_with(Some(register(Runtime::builder())), ["durable", "check"]),
        ExitCode::from(64)
    );
}

// ---- through the HTTP API ------------------------------------------------------

#[test]
fn the_same_commands_work_through_the_http_api() {
    let f = Fixture::live();
    let server = f
        .threads
        .block_on(durable_http::serve(
            f.client(),
            "127.0.0.1:0".parse().unwrap(),
            durable_http::ApiOptions::with_token("s3cret"),
        ))
        .expect("the API serves");
    let url = format!("http://{}", server.local_addr());
    let api = |args: &[&str]| {
        let mut all = vec!["--url", url.as_str()];
        all.extend_from_slice(args);
        command(&all).env("DURABLE_TOKEN", "s3cret").assert()
    };

    let listed = stdout(&code(api(&["list"]), 0));
    assert_eq!(sorted(listed_ids(&listed)), ALL);
    let page = stdout(&code(
        api(&[
            "list",
            "--page-size",
            "2",
            "--status",
            "completed,failed,running",
        ]),
        0,
    ));
    let token = next_token(&page).expect("a next page");
    let second = stdout(&code(
        api(&["list", "--page-size", "2", "--after", &token]),
        0,
    ));
    assert_eq!(listed_ids(&second).len(), 2);

    let described = stdout(&code(api(&["describe", "stall-1"]), 0));
    for word in ["activity", "stall", "timer", "tests/cli.rs:", "input:"] {
        assert!(described.contains(word), "{word} in:\n{described}");
    }
    let jsonl = stdout(&code(api(&["history", "done-1", "-o", "jsonl"]), 0));
    let local = stdout(&code(f.durable(&["history", "done-1", "-o", "jsonl"]), 0));
    assert_eq!(jsonl, local, "the same records either way");

    // The server has the code: it names the event wait-1 waits for.
    let waiting = stdout(&code(api(&["describe", "wait-1"]), 0));
    assert!(
        waiting
            .lines()
            .any(|l| l.contains("event") && l.contains("`approve`")),
        "{waiting}"
    );
    let v = json(&code(api(&["describe", "wait-1", "-o", "json"]), 0));
    assert_eq!(v["waiting_on"][0]["kind"], "event", "{v}");
    assert_eq!(v["waiting_on"][0]["name"], "approve", "{v}");

    code(
        api(&["raise", "wait-1", "approve", r#""eve""#, "--key", "once"]),
        0,
    );
    let waited = code(api(&["wait", "wait-1", "--timeout", "60s"]), 0);
    assert!(
        stdout(&waited).contains("approved by eve"),
        "{}",
        stdout(&waited)
    );
    code(api(&["raise", "wait-1", "approve", "1"]), 5);
    code(api(&["describe", "no-such-id"]), 4);
    code(api(&["raise", "stall-1", "approve", "{oops"]), 64);
    code(api(&["suspend", "stall-1", "--reason", "over http"]), 0);
    code(api(&["resume", "stall-1", "--reason", "back"]), 0);
    let history = stdout(&code(api(&["history", "stall-1"]), 0));
    assert!(
        history.contains("over http") && history.contains("back"),
        "{history}"
    );
    code(api(&["purge", "stall-1"]), 5);
    code(api(&["purge", "--status", "completed"]), 64);
    let purged = stdout(&code(api(&["purge", "--status", "completed", "--yes"]), 0));
    assert!(purged.contains("purged 3 instances"), "{purged}");
    code(api(&["terminate", "stall-1", "--reason", "done here"]), 0);
    code(api(&["wait", "stall-1", "--timeout", "60s"]), 2);

    // The token: required, checked, and never taken in the URL.
    let no_token = code(durable(&["--url", &url, "list"]), 77);
    assert!(
        stderr(&no_token).contains("DURABLE_TOKEN"),
        "{}",
        stderr(&no_token)
    );
    code(
        command(&["--url", &url, "list"])
            .env("DURABLE_TOKEN", "wrong")
            .assert(),
        77,
    );
    code(durable(&["--url", &url, "--token", "s3cret", "list"]), 0);
    let in_url = format!("{url}/?token=s3cret");
    let a = code(durable(&["--url", &in_url, "list"]), 64);
    assert!(stderr(&a).contains("never goes in a URL"), "{}", stderr(&a));
    code(durable(&["--url", "ftp://example", "list"]), 64);
    let not_api = format!("{url}/nothing-here");
    code(
        command(&["--url", &not_api, "list"])
            .env("DURABLE_TOKEN", "s3cret")
            .assert(),
        69,
    );

    f.threads.block_on(server.shutdown());
    let gone = code(
        command(&["--url", &url, "list"])
            .env("DURABLE_TOKEN", "s3cret")
            .assert(),
        69,
    );
    assert!(
        stderr(&gone).contains("is the server running"),
        "{}",
        stderr(&gone)
    );
}

// ---- PostgreSQL -------------------------------------------------------------------

/// The test server: `DATABASE_URL`, or the local trust-auth server.
fn postgres_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

#[test]
fn postgres_databases_are_read_and_steered_too() {
    use durable::store::{PostgresOptions, PostgresStore};
    let url = postgres_url();
    let schema = format!("cli_test_{}", std::process::id());
    let mut options = PostgresOptions::default();
    options.schema.clone_from(&schema);
    options.pool_size = 2;
    if let Err(e) = PostgresStore::connect_with(&url, &options) {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL at `{url}` is needed in CI: {e}"
        );
        eprintln!("skipped: no PostgreSQL at `{url}` ({e})");
        return;
    }
    struct SchemaGuard(String, PostgresOptions);
    impl Drop for SchemaGuard {
        fn drop(&mut self) {
            if let Ok(store) = PostgresStore::connect_with(&self.0, &self.1) {
                let _ = store.drop_schema();
            }
        }
    }
    let _guard = SchemaGuard(url.clone(), options.clone());
    let threads = threads();
    threads.block_on(async {
        let runtime = register(Runtime::builder())
            .postgres_with(&url, options.clone())
            .poll_interval(Duration::from_millis(50))
            .shutdown_grace(Duration::from_millis(10))
            .start()
            .await
            .expect("the runtime starts on PostgreSQL");
        populate(&runtime).await;
        runtime.shutdown().await.unwrap();
    });
    let pg = |args: &[&str]| {
        let mut all = vec!["--postgres", url.as_str(), "--schema", schema.as_str()];
        all.extend_from_slice(args);
        durable(&all)
    };
    assert_eq!(sorted(listed_ids(&stdout(&code(pg(&["list"]), 0)))), ALL);
    let described = stdout(&code(pg(&["describe", "stall-1"]), 0));
    assert!(
        described.contains("timer") && described.contains("tests/cli.rs:"),
        "{described}"
    );
    code(pg(&["wait", "fail-1"]), 1);
    code(pg(&["suspend", "wait-1", "--reason", "on postgres"]), 0);
    let history = stdout(&code(pg(&["history", "wait-1"]), 0));
    assert!(history.contains("on postgres"), "{history}");
    code(pg(&["purge", "done-1"]), 0);
    code(pg(&["describe", "done-1"]), 4);
    // Through the environment, and a schema that does not exist.
    let a = code(
        command(&["list", "--prefix", "done-"])
            .env("DURABLE_POSTGRES", &url)
            .env("DURABLE_SCHEMA", &schema)
            .assert(),
        0,
    );
    assert_eq!(listed_ids(&stdout(&a)), ["done-2"]);
    let a = code(
        durable(&[
            "--postgres",
            &url,
            "--schema",
            "no_such_schema_here",
            "list",
        ]),
        69,
    );
    assert!(stderr(&a).contains("cannot open"), "{}", stderr(&a));
}

#[test]
fn diff_aligns_two_instances_by_sequence_number() {
    let f = Fixture::new();
    let same = stdout(&code(f.durable(&["diff", "done-1", "done-2"]), 0));
    assert!(same.contains("they took the same steps"), "{same}");
    assert!(same.contains("ActivityScheduled double"), "{same}");

    let parted = stdout(&code(f.durable(&["diff", "done-1", "stall-1"]), 0));
    assert!(parted.contains("they part at #0"), "{parted}");
    let v = json(&code(
        f.durable(&["diff", "done-1", "stall-1", "-o", "json"]),
        0,
    ));
    assert_eq!(v["parted_at"], 0, "{v}");
    assert_eq!(v["rows"][0]["same"], false, "{v}");
    assert_eq!(v["rows"][0]["a"]["name"], "double", "{v}");
    assert_eq!(v["rows"][0]["b"]["name"], "stall", "{v}");
    assert!(
        v["rows"][0]["a"]["site"]
            .as_str()
            .unwrap()
            .contains("tests/cli.rs:"),
        "{v}"
    );
    code(f.durable(&["diff", "done-1", "nobody"]), 4);
}
