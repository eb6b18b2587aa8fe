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
