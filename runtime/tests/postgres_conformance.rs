//! The store conformance suite on the PostgreSQL store, against the real
//! server named by `DATABASE_URL` (default: the local trust-auth server),
//! each check in a schema of its own, dropped afterwards.
#![cfg(feature = "postgres")]

mod pg {
    include!("support/pg.rs");
}

durable::store_conformance_tests!(pg::fresh_store);
