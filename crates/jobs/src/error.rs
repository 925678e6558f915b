//! The crate's one error type.

use uuid::Uuid;

use crate::queue::Work;

/// Everything that can go wrong in [`Jobs`](crate::Jobs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot be used (an unknown URL scheme, a bad
    /// lease).
    #[error("invalid jobs configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A database statement failed.
    #[error("database: {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the schema migrations failed.
    #[error("database migration: {source}")]
    Migrate {
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A Redis command failed.
    #[error("redis: {operation}: {source}")]
    Redis {
        /// What was being done.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// No record has this id.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `function`, `build`, `task` or `api key`.
        kind: &'static str,
        /// The id asked for.
        id: Uuid,
    },
    /// A record with this id exists already.
    #[error("{kind} {id} already exists")]
    Exists {
        /// `build` or `task`.
        kind: &'static str,
        /// The id given.
        id: Uuid,
    },
    /// The build has its final status; it takes no more updates.
    #[error("build {id} is {status} already")]
    Finished {
        /// The build.
        id: Uuid,
        /// Its final status (`completed`, `failed`, `cancelled`).
        status: &'static str,
    },
    /// An update that cannot be applied as asked.
    #[error("invalid update of build {id}: {reason}")]
    InvalidUpdate {
        /// The build.
        id: Uuid,
        /// Why.
        reason: String,
    },
    /// The lease ran out and the work may be with another worker now.
    #[error("lease on {work} lost: it ran out and the work was given to another worker")]
    LeaseLost {
        /// The work the lease was for.
        work: Work,
    },
    /// A stored value cannot be read back (a damaged or foreign row).
    #[error("stored {what} unreadable: {reason}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result of [`Jobs`](crate::Jobs) operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a sqlx error with what was being done.
pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Database { operation, source }
}

/// Wraps a Redis error with what was being done.
pub(crate) fn redis(operation: &'static str) -> impl FnOnce(redis::RedisError) -> Error {
    move |source| Error::Redis { operation, source }
}
