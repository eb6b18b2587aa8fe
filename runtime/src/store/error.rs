//! The store's neutral error: what any backend can report, classified so
//! the runtime (and users) can act on it without knowing the backend.

use std::sync::Arc;

/// A storage failure, classified so callers can act on it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database belongs to another application; nothing was touched.
    #[error("{location} belongs to another application ({detail}); durable will not touch it")]
    ForeignDatabase {
        /// The file or schema.
        location: String,
        /// What was found instead of durable's mark.
        detail: String,
    },
    /// The database was written by another version of durable's schema;
    /// nothing was changed. (The schema of the release just before is
    /// brought up to date when a store opens it for writing; a read-only
    /// open, as the database check's, refuses it with this.)
    #[error("{location} has schema version {found}, this release reads version {supported}{hint}", hint = if *found > *supported { ": it was written by a newer release" } else { ": it was written by an older release (the release just before's schema is brought up to date by opening it for writing, as a runtime does when it starts)" })]
    SchemaVersion {
        /// The file or schema.
        location: String,
        /// The version found.
        found: i64,
        /// The version this release reads and writes.
        supported: i64,
    },
    /// The database is locked by another writer for longer than allowed.
    #[error("the database is busy or locked by another process")]
    Busy,
    /// The disk, file system or server refused a write for lack of space.
    #[error("the database cannot be written: {0}")]
    Full(String),
    /// The database may not be written.
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    /// A stored row does not decode: the data is damaged or was edited.
    #[error("corrupt store data in {what}: {detail}")]
    Corrupt {
        /// Which row or column.
        what: String,
        /// The decoder's complaint.
        detail: String,
    },
    /// The store cannot be reached for now (a lost connection); retrying
    /// later may succeed. Whether the call took effect is unknown only when
    /// the store says so in `detail`.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store is closed (the runtime is going down).
    #[error("the store is closed")]
    Closed,
    /// A failure particular to the backend; `source` says what
    /// (for SQLite, a [`SqliteError`](crate::store::SqliteError)).
    #[error("{0}")]
    Backend(Arc<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend's own error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Arc::new(e))
    }

    /// The backend's own error, if it is one of type `E`.
    pub fn backend_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Self::Backend(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// Whether the call may succeed if tried again unchanged.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Busy | Self::Unavailable(_))
    }
}
