//! The store's error type. Every message names the operation and the analysis (or row) it was
//! about, because a store error usually surfaces far from the call that caused it (a gRPC status,
//! a log line of the runner). Variants carry one value each, as Seam 1 sketches them
//! (`NotFound(id)`, `Sqlite(..)` …), so callers can match `StoreError::Sqlite(_)`.

use std::fmt;
use std::path::PathBuf;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No analysis with this id (the operation needed one). Holds the id.
    #[error("no analysis with id {0:?}")]
    NotFound(String),
    /// A row read from the database does not hold what the schema promises (a negative
    /// sequence number, a NULL where a value must be, text where a number must be …). The message
    /// names the table, the row and the column.
    #[error("corrupt store row: {0}")]
    Corrupt(String),
    /// Input rejected before it reached the database; the message names the field.
    #[error("invalid {0}")]
    Invalid(String),
    /// SQLite failed (I/O error, disk full, locked by another process past the busy timeout …).
    #[error(transparent)]
    Sqlite(BackendError),
    /// A file-system operation on the data directory failed.
    #[error(transparent)]
    Io(IoError),
    /// A schema migration failed, or the file is not a Vigil store.
    #[error("schema migration: {0}")]
    Migration(String),
    /// The database was written by a newer Vigil whose schema this binary does not know. Nothing was
    /// changed; run the newer binary (or restore a backup taken before the upgrade).
    #[error(
        "the store {path} has schema version {found}, newer than version {known} that this binary \
         knows: it was written by a newer Vigil; refusing to open it rather than misread it"
    )]
    SchemaTooNew {
        /// The database file.
        path: String,
        /// The version recorded in the database.
        found: i64,
        /// The newest version this binary can migrate to.
        known: i64,
    },
}

/// An error of the embedded database engine with the operation it interrupted. The engine's own
/// error type stays private so that the public API does not tie callers to SQLite (a later
/// backend is PostgreSQL); it is still reachable as [`std::error::Error::source`].
pub struct BackendError {
    op: String,
    err: rusqlite::Error,
}

impl BackendError {
    /// What the store was doing, with the analysis id where there is one.
    pub fn operation(&self) -> &str {
        &self.op
    }

    /// True when another connection (another process) held the database locked for longer than
    /// the busy timeout: retrying later may succeed.
    pub fn is_busy(&self) -> bool {
        matches!(
            self.err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.err)
    }
}

impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendError")
            .field("op", &self.op)
            .field("err", &self.err)
            .finish()
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.err)
    }
}

/// A file-system error on the data directory, with the operation and the path.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct IoError {
    /// What the store was doing.
    pub op: &'static str,
    /// The path it was doing it to.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

/// Wraps a SQLite error with the operation it interrupted (`map_err(sql(|| format!(…)))`).
pub(crate) fn sql<F: FnOnce() -> String>(op: F) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |err| StoreError::Sqlite(BackendError { op: op(), err })
}

/// [`sql`] for a fixed operation name.
pub(crate) fn sql_op(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |err| {
        StoreError::Sqlite(BackendError {
            op: op.to_string(),
            err,
        })
    }
}
