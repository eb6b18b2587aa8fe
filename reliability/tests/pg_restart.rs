//! Worker processes on a PostgreSQL server that is restarted under them
//! (`pg_ctl stop -m fast`, then started again) while they run: they
//! reconnect and go on, and nothing their clients were told is done is
//! lost. The server is the test's own (initdb in a temporary directory, a
//! free port), so that other tests' server stays up.

use std::time::Duration;

use durable::store::{PostgresOptions, PostgresStore};
use durable_reliability::check::check_postgres;
use durable_reliability::pg::{PrivateServer, SchemaGuard, Sql};
use durable_reliability::procs::{run_together, until, Workload};
use durable_reliability::recorded::{read_record, Line};
use durable_reliability::target::Target;
use durable_reliability::workload::generation;

const PER_GENERATION: u64 = 16;
const WORKERS: u64 = 4;
const RESTARTS: usize = 2;

/// Instances finished, and instances stored, in `schema`; `None` while
/// the server cannot be reached.
fn progress(url: &str, schema: &str) -> Option<(i64, i64)> {
    let sql = std::panic::catch_unwind(|| Sql::connect(url)).ok()?;
    let row = sql.rows(&format!(
        "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FROM \"{schema}\".instances"
    ));
    row.first().map(|r| (r.get(0), r.get(1)))
}

#[test]
fn workers_go_on_through_server_restarts_and_lose_nothing_acknowledged() {
    let server = match PrivateServer::start() {
        Ok(server) => server,
        Err(e) if e.starts_with("no initdb") => {
            println!("skipped: {e}");
            return;
        }
        Err(e) => panic!("a private PostgreSQL server: {e}"),
    };
    let url = server.url();
    let schema = SchemaGuard::new(&url, "restart");
    let mut options = PostgresOptions::default();
    options.schema.clone_from(&schema.schema);
    options.listen = false;
    PostgresStore::connect_with(&url, &options).expect("the schema is created");
    let dir = tempfile::tempdir().expect("a temp dir");
    let record = dir.path().join("record.log");
    let work = Workload {
        exe: env!("CARGO_BIN_EXE_workload").into(),
        target: Target {
            postgres: Some((url.clone(), schema.schema.clone())),
            record: Some(record.clone()),
            instance_lock: Some(Duration::from_secs(1)),
            activity_lease: Some(Duration::from_secs(2)),
            ..Target::default()
        },
        effects: dir.path().join("effects.log"),
        count: PER_GENERATION,
        step_ms: None,
    };
    // No run starts another's instances again: every instance exists
    // because a client was told it was started, and must be there at the
    // end.
    let targets = vec![work.target.clone(); WORKERS as usize];
    let mut restarts = Vec::new();
    let (elapsed, _) = run_together(&work, &targets, false, || {
        if restarts.len() == RESTARTS {
            std::thread::sleep(Duration::from_millis(20));
            return;
        }
        // Restart once more work finished since the last restart, while
        // some is still open.
        let done_before = restarts.last().map_or(0, |(done, _)| *done);
        let (done, stored) = until("the workers to make progress", || {
            progress(&url, &schema.schema)
                .filter(|(done, stored)| *done > done_before + 3 && done < stored)
        });
        server.stop().expect("the server stops");
        server
            .restart_after_stop()
            .expect("the server starts again");
        restarts.push((done, stored));
    });

    let report = check_postgres(
        &url,
        &schema.schema,
        &work.effects,
        &(0..WORKERS)
            .flat_map(|g| generation(g, PER_GENERATION))
            .collect::<Vec<_>>(),
    );
    let errors: Vec<(String, bool, String)> = read_record(&record)
        .expect("the record reads")
        .into_iter()
        .filter_map(|l| match l {
            Line::Error {
                method,
                transient,
                message,
                ..
            } => Some((method, transient, message)),
            Line::Commit { .. } => None,
        })
        .collect();
    let transient = errors.iter().filter(|e| e.1).count();
    println!(
        "{RESTARTS} restarts at (finished, stored) {restarts:?}, {} instances in {elapsed:?}; \
         the workers' store calls failed {} times ({transient} transient); not transient: {:?}",
        report.instances,
        errors.len(),
        errors.iter().filter(|e| !e.1).take(5).collect::<Vec<_>>()
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(restarts.len(), RESTARTS, "the server was restarted mid-run");
    assert!(
        transient > 0,
        "the workers never met the restarts: {}",
        server.log()
    );
}
