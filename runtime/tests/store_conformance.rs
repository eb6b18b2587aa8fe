//! The store conformance suite on the SQLite store, on a real file.

durable::store_conformance_tests!(|| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store =
        durable::store::SqliteStore::open(dir.path().join("conformance.db")).expect("opens");
    (dir, store)
});
