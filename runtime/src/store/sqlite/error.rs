//! What only the SQLite store can fail with, carried to callers inside
//! [`StoreError::Backend`](crate::store::StoreError::Backend).

/// A failure particular to SQLite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The file exists but is not a SQLite database.
    #[error("`{path}` is not a SQLite database")]
    NotADatabase {
        /// The file.
        path: String,
    },
    /// A pragma did not take the value asked for.
    #[error("PRAGMA {name} is `{found}` after setting it to `{expected}`")]
    Pragma {
        /// The pragma.
        name: &'static str,
        /// The value asked for.
        expected: String,
        /// The value read back.
        found: String,
    },
    /// Another write in the same group commit failed so that SQLite gave up
    /// the whole transaction; nothing of this call was written. Retry it.
    #[error(
        "the transaction was rolled back with another write of its group; nothing was written"
    )]
    RolledBack,
    /// Any other SQLite error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}
