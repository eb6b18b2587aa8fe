//! What only the PostgreSQL store has: its settings refused with a clear
//! error, before anything is touched on the server.
#![cfg(feature = "postgres")]

mod pg {
    include!("support/pg.rs");
}

use durable::store::{PostgresOptions, PostgresStore, StoreError};

#[test]
fn a_schema_name_that_is_not_a_plain_identifier_is_refused() {
    for bad in [
        "",
        "Has-Dash",
        "1starts_with_digit",
        "x\"; DROP SCHEMA public; --",
    ] {
        let mut options = PostgresOptions::default();
        options.schema = bad.to_owned();
        let err = PostgresStore::connect_with(&pg::url(), &options).unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{bad}: {err}");
        assert!(err.to_string().contains("schema"), "{bad}: {err}");
    }
}

#[test]
fn a_connection_url_that_does_not_parse_is_refused() {
    let err = PostgresStore::connect("postgres://[::1").unwrap_err();
    assert!(err.to_string().contains("URL"), "{err}");
}

/// A server that does not answer is `Unavailable`, which callers may try
/// again, not a backend error for good.
#[test]
fn an_unreachable_server_is_unavailable_and_transient() {
    let mut options = PostgresOptions::default();
    options.connect_timeout = std::time::Duration::from_secs(5);
    let err =
        PostgresStore::connect_with("host=127.0.0.1 port=1 user=postgres", &options).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.is_transient(), "{err}");
}

/// A schema name long enough that its NOTIFY channel would not fit
/// PostgreSQL's identifiers is refused at once.
#[test]
fn a_schema_name_too_long_for_its_channel_is_refused() {
    let mut options = PostgresOptions::default();
    options.schema = "s".repeat(56);
    let err = PostgresStore::connect_with(&pg::url(), &options).unwrap_err();
    assert!(err.to_string().contains("55 bytes"), "{err}");
}

#[durable::orchestrator]
async fn nap(ctx: durable::Context, ms: u64) -> u64 {
    ctx.sleep(std::time::Duration::from_millis(ms)).await;
    ms
}

/// How long a 2 s durable sleep takes on a worker whose clock is off
/// by `skew_micros`: the runtime keeps time by the server's clock.
async fn nap_on(skew_micros: i64) -> std::time::Duration {
    let schema = pg::unique_schema();
    let _guard = pg::SchemaGuard {
        schema: schema.clone(),
    };
    let runtime = durable::Runtime::builder()
        .postgres_with(pg::url(), pg::options(&schema))
        .orchestrator(nap)
        .poll_interval(std::time::Duration::from_millis(50))
        .clock_skew(skew_micros)
        .start()
        .await
        .expect("starts");
    let client = runtime.client();
    let started = std::time::Instant::now();
    client
        .start_with_id(nap, "n", 2_000)
        .await
        .expect("started");
    let done = client
        .wait_timeout("n", std::time::Duration::from_secs(60))
        .await;
    let took = started.elapsed();
    runtime.shutdown().await.expect("shuts down");
    assert!(
        done.is_ok(),
        "a 2 s sleep on a clock {skew_micros} µs off: {done:?}"
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_on_a_worker_an_hour_fast_fires_after_its_duration() {
    nap_on(3_600_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_on_a_worker_an_hour_slow_waits_its_duration() {
    let took = nap_on(-3_600_000_000).await;
    assert!(
        took >= std::time::Duration::from_millis(2_000),
        "a 2 s sleep ended after {took:?}"
    );
}

/// `url` with its connections named `name` in `pg_stat_activity`.
fn named(url: &str, name: &str) -> String {
    if url.contains("://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={name}")
    } else {
        format!("{url} application_name={name}")
    }
}

/// A store call whose connection is lost before its transaction commits
/// is made again on a fresh connection: the server rolled the first try
/// back, so nothing of it happened twice. Here the call waits on a table
/// lock the test holds, the test terminates its backend, then lets go.
#[test]
fn a_call_whose_connection_is_lost_before_commit_is_made_again() {
    use durable::store::{NewInstance, Store};
    let schema = pg::unique_schema();
    let _guard = pg::SchemaGuard {
        schema: schema.clone(),
    };
    let name = format!("lost_{}", std::process::id());
    let mut options = pg::options(&schema);
    options.listen = false;
    options.pool_size = 1;
    let store = PostgresStore::connect_with(&named(&pg::url(), &name), &options)
        .unwrap_or_else(|e| panic!("PostgreSQL at `{}`: {e}", pg::url()));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (mut admin, connection) = rt
        .block_on(tokio_postgres::connect(&pg::url(), tokio_postgres::NoTls))
        .expect("the test connects");
    rt.spawn(connection);
    let lock = rt.block_on(admin.transaction()).expect("begins");
    rt.block_on(lock.batch_execute(&format!(
        "LOCK TABLE {schema}.instances IN ACCESS EXCLUSIVE MODE"
    )))
    .expect("locks");

    let input: durable::history::Payload = serde_json::from_str("1").expect("JSON");
    let create = std::thread::spawn(move || {
        let created = store.create_instances(&[NewInstance::new("a", "o", input, 0)]);
        (store, created)
    });
    // The store's call waits on the lock; its backend is then terminated.
    let waiting = format!(
        "SELECT pid FROM pg_stat_activity WHERE application_name = '{name}' \
         AND wait_event_type = 'Lock'"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let pid: i32 = loop {
        let rows = rt.block_on(lock.query(&waiting, &[])).expect("reads");
        if let Some(row) = rows.first() {
            break row.get(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the call never waited on the lock"
        );
        std::thread::yield_now();
    };
    let killed: bool = rt
        .block_on(lock.query_one("SELECT pg_terminate_backend($1)", &[&pid]))
        .expect("terminates")
        .get(0);
    assert!(killed);
    rt.block_on(lock.rollback()).expect("lets go");

    let (store, created) = create.join().expect("the call does not panic");
    let created = created.expect("the call is made again on a fresh connection");
    assert_eq!(created.len(), 1);
    let history = store.history("a").expect("reads").expect("the instance");
    assert!(history.is_empty(), "{history:?}");
    let queued = store.queued(&["a".to_owned()]).expect("reads");
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].1.len(), 1, "one Started message: {queued:?}");
}

/// With `create_schema` off, a schema that holds no durable tables is a
/// clear error and is left uncreated; one made beforehand is used.
#[test]
fn without_create_schema_a_missing_schema_is_an_error_and_stays_missing() {
    use durable::store::PostgresError;
    let schema = pg::unique_schema();
    let _guard = pg::SchemaGuard {
        schema: schema.clone(),
    };
    let mut options = pg::options(&schema);
    options.listen = false;
    options.create_schema = false;
    let err = PostgresStore::connect_with(&pg::url(), &options).unwrap_err();
    assert!(
        matches!(
            err.backend_error::<PostgresError>(),
            Some(PostgresError::NoSchema(_))
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&schema), "{err}");

    // The database check of a misspelled schema creates nothing either.
    let err = durable::Runtime::builder()
        .postgres_with(pg::url(), options.clone())
        .check_database()
        .unwrap_err();
    assert!(err.to_string().contains("no durable tables"), "{err}");
    let err = PostgresStore::connect_with(&pg::url(), &options).unwrap_err();
    assert!(
        err.to_string().contains("no durable tables"),
        "still none: {err}"
    );

    // Made once by a role that may, the schema is then used as it is.
    let mut creating = options.clone();
    creating.create_schema = true;
    drop(PostgresStore::connect_with(&pg::url(), &creating).expect("creates"));
    PostgresStore::connect_with(&pg::url(), &options).expect("uses the schema made before");
}

/// Connects the test's own client (for setup the store does not do).
fn admin() -> (tokio::runtime::Runtime, tokio_postgres::Client) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (client, connection) = rt
        .block_on(tokio_postgres::connect(&pg::url(), tokio_postgres::NoTls))
        .expect("the test connects");
    rt.spawn(connection);
    (rt, client)
}

/// A lock timeout (a role's default, or one set in the URL) ends a
/// statement the server rolls back: nothing was written, and the error is
/// transient, to be tried again, not a permanent backend error.
#[test]
fn a_lock_timeout_is_transient() {
    use durable::store::{NewInstance, Outgoing, Store};
    let schema = pg::unique_schema();
    let _guard = pg::SchemaGuard {
        schema: schema.clone(),
    };
    let mut options = pg::options(&schema);
    options.listen = false;
    let url = named(&pg::url(), "lock_timeout");
    let url = if url.contains("://") {
        format!("{url}&options=-c%20lock_timeout%3D100")
    } else {
        format!("{url} options='-c lock_timeout=100'")
    };
    let store = PostgresStore::connect_with(&url, &options).expect("connects");
    let one: durable::history::Payload = serde_json::from_str("1").expect("JSON");
    store
        .create_instances(&[NewInstance::new("a", "o", one.clone(), 0)])
        .expect("creates");

    let (rt, mut admin) = admin();
    let held = rt.block_on(admin.transaction()).expect("begins");
    rt.block_on(held.batch_execute(&format!(
        "SELECT 1 FROM {schema}.instances WHERE id = 'a' FOR UPDATE"
    )))
    .expect("holds the row");
    let event = durable::history::Event::EventRaised {
        name: "e".to_owned(),
        data: one,
    };
    let err = store.send(&[Outgoing::new("a", event, false)]).unwrap_err();
    rt.block_on(held.rollback()).expect("lets go");
    assert!(err.is_transient(), "{err:?}");
    let queued = store.queued(&["a".to_owned()]).expect("reads");
    assert_eq!(queued[0].1.len(), 1, "only the Started message: {queued:?}");
}

/// A worker whose role may not create anything starts on a schema made
/// beforehand, with the default options (the store creates nothing that
/// exists, so it needs no right to create).
#[test]
fn a_role_that_may_not_create_uses_a_schema_made_before() {
    let schema = pg::unique_schema();
    let _guard = pg::SchemaGuard {
        schema: schema.clone(),
    };
    drop(PostgresStore::connect_with(&pg::url(), &pg::options(&schema)).expect("creates"));
    let role = format!("worker_{}", std::process::id());
    let (rt, admin) = admin();
    let setup = format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
         GRANT USAGE ON SCHEMA {schema} TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"
    );
    rt.block_on(admin.batch_execute(&setup))
        .expect("makes the role");
    let url = pg::url();
    let as_worker = if url.contains("://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}user={role}")
    } else {
        format!("{url} user={role}")
    };
    let mut options = pg::options(&schema);
    options.listen = false;
    let connected = PostgresStore::connect_with(&as_worker, &options).map(drop);
    let teardown = format!("DROP OWNED BY {role}; DROP ROLE {role}");
    rt.block_on(admin.batch_execute(&teardown))
        .expect("drops the role");
    connected.expect("a role without CREATE connects to the schema made before");
}
