// Shared by the PostgreSQL tests: a fresh schema per test, dropped when
// its guard goes.

use durable::store::{PostgresOptions, PostgresStore};

/// The test server: `DATABASE_URL`, or the local trust-auth server.
#[allow(dead_code)]
pub(crate) fn url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// A schema name no other test or run uses.
pub(crate) fn unique_schema() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "test_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Drops its schema when dropped.
pub(crate) struct SchemaGuard {
    pub(crate) schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        // To look at what a failed test left: `DURABLE_KEEP_SCHEMA=1`.
        if std::env::var_os("DURABLE_KEEP_SCHEMA").is_some() {
            eprintln!("kept schema {}", self.schema);
            return;
        }
        let mut options = PostgresOptions::default();
        options.schema = self.schema.clone();
        options.listen = false;
        options.pool_size = 1;
        if let Ok(store) = PostgresStore::connect_with(&url(), &options) {
            let _ = store.drop_schema();
        }
    }
}

/// Options for a fresh schema.
pub(crate) fn options(schema: &str) -> PostgresOptions {
    let mut options = PostgresOptions::default();
    options.schema = schema.to_owned();
    options.pool_size = 4;
    options
}

/// A store on a fresh schema, with the guard that drops it.
#[allow(dead_code)]
pub(crate) fn fresh_store() -> (SchemaGuard, PostgresStore) {
    let schema = unique_schema();
    let store = PostgresStore::connect_with(&url(), &options(&schema))
        .unwrap_or_else(|e| panic!("PostgreSQL at `{}`: {e}", url()));
    (SchemaGuard { schema }, store)
}
