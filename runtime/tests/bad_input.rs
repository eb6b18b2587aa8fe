//! Bad input gets a clear, typed error, and nothing is lost.

mod common;

use common::{builder, db, within};
use durable::store::SqliteError;
use durable::{activity, orchestrator, Context, Error, FailureKind, Runtime, StoreError};

#[activity]
async fn double(x: u64) -> u64 {
    x * 2
}

#[activity]
async fn triple(x: u64) -> u64 {
    x * 3
}

#[orchestrator]
async fn uses_double(ctx: Context, x: u64) -> u64 {
    ctx.call(double, x).await.unwrap_or(0)
}

#[orchestrator]
async fn hides_its_callee(ctx: Context, x: u64) -> u64 {
    // Through a local, the macro cannot know the callee: the runtime
    // fails the instance when it calls it.
    let f = triple;
    ctx.call(f, x).await.unwrap_or(0)
}

#[orchestrator]
async fn other(_ctx: Context) -> String {
    "other".to_owned()
}

#[tokio::test]
async fn starting_an_unregistered_orchestrator_is_refused() {
    let db = db();
    let rt = builder(&db)
        .activity(double)
        .orchestrator(uses_double)
        .start()
        .await
        .unwrap();
    let err = rt.client().start(other, ()).await.unwrap_err();
    assert!(
        matches!(err, Error::UnregisteredOrchestrator { ref name } if name == "other"),
        "{err}"
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unregistered_callee_the_macro_sees_stops_the_runtime_from_starting() {
    let db = db();
    let err = builder(&db)
        .orchestrator(uses_double)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnregisteredActivity { ref orchestrator, ref activity }
            if orchestrator == "uses_double" && activity == "double"),
        "{err}"
    );
    assert!(
        err.to_string().contains(".activity(double)"),
        "the fix is named: {err}"
    );
}

#[tokio::test]
async fn an_unregistered_callee_the_macro_cannot_see_fails_the_instance_naming_it() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(hides_its_callee)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(hides_its_callee, 1).await.unwrap();
    let err = within(h.result()).await.unwrap_err();
    let Error::Failed { failure, .. } = err else {
        panic!("expected a failed instance, got {err}");
    };
    assert_eq!(failure.kind, FailureKind::UnregisteredActivity);
    assert!(failure.message.contains("`triple`"), "{}", failure.message);
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_duplicate_instance_id_is_an_error_and_the_first_is_untouched() {
    let db = db();
    let rt = builder(&db)
        .activity(double)
        .orchestrator(uses_double)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let first = client
        .start_with_id(uses_double, "order-1", 5)
        .await
        .unwrap();
    let err = client
        .start_with_id(uses_double, "order-1", 6)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InstanceExists { ref id } if id == "order-1"),
        "{err}"
    );
    assert_eq!(within(first.result()).await.unwrap(), 10);
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn empty_and_huge_ids_are_refused() {
    let db = db();
    let rt = builder(&db)
        .activity(double)
        .orchestrator(uses_double)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let err = client.start_with_id(uses_double, "", 1).await.unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    let err = client
        .start_with_id(uses_double, "x".repeat(5000), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    // Control characters would make logs and tools lie: refused.
    for bad in ["nul\u{0}", "two\nlines", "bidi\u{202e}gnp.exe"] {
        let err = client.start_with_id(uses_double, bad, 1).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    // Any other text is fine, quotes and SQL included.
    let odd = "'; DROP TABLE instances; --\u{1F600}";
    let h = client.start_with_id(uses_double, odd, 4).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 8);
    assert_eq!(client.status(odd).await.unwrap().id, odd);
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_handle_of_the_wrong_orchestrator_is_an_error() {
    let db = db();
    let rt = builder(&db)
        .activity(double)
        .orchestrator(uses_double)
        .orchestrator(other)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client.start_with_id(uses_double, "n", 1).await.unwrap();
    let err = within(client.handle(other, "n").result())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongOrchestrator { .. }), "{err}");
    let err = client.status("missing").await.unwrap_err();
    assert!(matches!(err, Error::InstanceNotFound { .. }), "{err}");
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    if common::on_postgres() {
        return; // a SQLite file's case: PostgreSQL has no file to damage
    }
    let db = db();
    let junk = b"this is not a database, it is a text file of some length..........".repeat(100);
    std::fs::write(&db.path, &junk).unwrap();
    let err = builder(&db).start().await.unwrap_err();
    let Error::Store(store_err) = &err else {
        panic!("not a store error: {err}");
    };
    assert!(
        matches!(
            store_err.backend_error::<SqliteError>(),
            Some(SqliteError::NotADatabase { .. })
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db.path).unwrap(),
        junk,
        "the file is untouched"
    );
}

#[tokio::test]
async fn a_database_of_another_schema_version_is_refused_not_migrated() {
    let db = db();
    let rt = builder(&db).start().await.unwrap();
    rt.shutdown().await.unwrap();
    let (set, get) = if common::on_postgres() {
        (
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            "SELECT value FROM meta WHERE key = 'schema_version'",
        )
    } else {
        ("PRAGMA user_version = 99", "PRAGMA user_version")
    };
    common::execute(&db, set, &[]);
    let err = builder(&db).start().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(StoreError::SchemaVersion { found: 99, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("newer release"), "{err}");
    assert_eq!(common::number(&db, get, &[]), 99, "nothing was changed");
}

#[tokio::test]
async fn another_applications_database_is_refused() {
    let db = db();
    if let Some(schema) = common::schema(&db) {
        common::execute(&db, &format!("CREATE SCHEMA \"{schema}\""), &[]);
    }
    common::execute(
        &db,
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)",
        &[],
    );
    let err = builder(&db).start().await.unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::ForeignDatabase { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn a_runtime_without_a_store_is_a_config_error() {
    let err = Runtime::builder().start().await.unwrap_err();
    assert!(matches!(err, Error::NoStore), "{err}");
}

/// `.synchronous(..)` configures the SQLite store the builder opens: with
/// a store given to `.store(..)` it would be silently ignored, so it is
/// refused.
#[tokio::test]
async fn synchronous_with_a_custom_store_is_refused_not_ignored() {
    let db = db();
    let store = durable::store::SqliteStore::open(&db.path).unwrap();
    let err = Runtime::builder()
        .store(store)
        .synchronous(durable::Synchronous::Normal)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidSetting {
                setting: "synchronous",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_name_registered_twice_is_refused_naming_it() {
    #[orchestrator(name = "twice")]
    async fn first(_ctx: Context) {}
    #[orchestrator(name = "twice")]
    async fn second(_ctx: Context) {}
    let err = Runtime::builder()
        .sqlite(":memory:")
        .orchestrator(first)
        .orchestrator(second)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateName { name } if name == "twice"),
        "{err}"
    );
}

#[tokio::test]
async fn an_in_memory_store_works_for_tests() {
    let rt = Runtime::builder()
        .sqlite(":memory:")
        .activity(double)
        .orchestrator(uses_double)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(uses_double, 21).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 42);
    rt.shutdown().await.unwrap();
}

/// A termination reason holding NUL is refused at the client: PostgreSQL's
/// text columns cannot hold it, and a turn that could not be written
/// would wedge the instance.
#[tokio::test]
async fn a_termination_reason_with_nul_is_refused_and_the_instance_goes_on() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(waits_forever)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(waits_forever, ()).await.unwrap();
    let err = client.terminate(h.id(), "bad\0reason").await.unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    client.terminate(h.id(), "a clean reason").await.unwrap();
    let status = within(client.wait(h.id())).await.unwrap();
    assert_eq!(status.terminated.as_deref(), Some("a clean reason"));
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn waits_forever(ctx: Context) -> String {
    ctx.wait_event::<String>("never").await
}
