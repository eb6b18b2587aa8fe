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
