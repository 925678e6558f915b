//! The database: one `sqlx::Any` pool over SQLite or PostgreSQL, the
//! embedded migrations of each, and the conversions between stored
//! columns and record fields.
//!
//! One set of queries serves both: `$N` placeholders (SQLite reads them
//! too), ids as text, times as microseconds since the epoch in `BIGINT`
//! columns, JSON as text, flags as 0/1. The two migration directories
//! differ only where the dialects do (identity columns).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Connection, Executor, Row};
use uuid::Uuid;

use crate::error::{Error, Result, db};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// Which SQL the database speaks where the two differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A connected, migrated database.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
}

impl Db {
    /// Connects to `url` (`sqlite://PATH`, created when missing, or
    /// `postgres://…`) and applies the migrations it lacks.
    pub(crate) async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = normalize(url)?;
        let options = AnyConnectOptions::from_str(&url)
            .map_err(db("parse database URL"))?
            .disable_statement_logging();
        if dialect == Dialect::Sqlite {
            // WAL lets readers run beside the one writer; the mode is a
            // property of the file, so set it once, before the pool opens
            // connections that would hold it busy.
            let mut conn = options
                .connect()
                .await
                .map_err(db("open the SQLite file"))?;
            conn.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(db("switch SQLite to WAL"))?;
            conn.close().await.map_err(db("close"))?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // NORMAL under WAL survives a crash of the process
                        // (only a power cut may lose the last commits) and
                        // is several times faster than FULL. Foreign keys
                        // and the 5 s busy timeout are sqlx's defaults.
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db("connect"))?;
        let migrator = match dialect {
            Dialect::Sqlite => &SQLITE,
            Dialect::Postgres => &POSTGRES,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate { source })?;
        Ok(Self { pool, dialect })
    }

    /// `FOR UPDATE SKIP LOCKED` on PostgreSQL; nothing on SQLite, where a
    /// write holds the whole database anyway.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// The dialect of `url` and the URL sqlx should get: SQLite files are
/// created when missing.
pub(crate) fn normalize(url: &str) -> Result<(Dialect, String)> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        if path.is_empty() || path.starts_with(':') {
            return Err(Error::Config {
                reason: "the SQLite database must be a file: sqlite://PATH".into(),
            });
        }
        let url = if path.contains('?') {
            format!("sqlite://{path}")
        } else {
            format!("sqlite://{path}?mode=rwc")
        };
        Ok((Dialect::Sqlite, url))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Dialect::Postgres, url.to_owned()))
    } else {
        Err(Error::Config {
            reason: format!(
                "database {:?}: expected sqlite://PATH or postgres://…",
                redact(url)
            ),
        })
    }
}

/// `url` with any password replaced by `****`, for messages and `Debug`.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Unparseable: show the scheme only, in case a secret is in there.
        Err(_) => url.split(':').next().unwrap_or_default().to_owned() + ":…",
    }
}

/// Now, in microseconds since the epoch.
pub(crate) fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// A stored time.
pub(crate) fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| Error::Corrupt {
        what: "time",
        reason: format!("{us} µs is out of range"),
    })
}

/// A duration in microseconds, for adding to [`now_us`].
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Typed access to a row's columns, mapping decode failures to errors.
pub(crate) struct Cols<'r>(pub(crate) &'r AnyRow);

impl Cols<'_> {
    pub(crate) fn text(&self, col: &str) -> Result<String> {
        self.0.try_get::<String, _>(col).map_err(db("read column"))
    }

    pub(crate) fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.0
            .try_get::<Option<String>, _>(col)
            .map_err(db("read column"))
    }

    pub(crate) fn int(&self, col: &str) -> Result<i64> {
        self.0.try_get::<i64, _>(col).map_err(db("read column"))
    }

    pub(crate) fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.0
            .try_get::<Option<i64>, _>(col)
            .map_err(db("read column"))
    }

    /// A non-negative integer as `T` (counts, sizes, durations).
    pub(crate) fn count<T: TryFrom<i64>>(&self, col: &str) -> Result<T> {
        let v = self.int(col)?;
        T::try_from(v).map_err(|_| Error::Corrupt {
            what: "count",
            reason: format!("{col} = {v} is out of range"),
        })
    }

    pub(crate) fn opt_count<T: TryFrom<i64>>(&self, col: &str) -> Result<Option<T>> {
        match self.opt_int(col)? {
            None => Ok(None),
            Some(v) => T::try_from(v).map(Some).map_err(|_| Error::Corrupt {
                what: "count",
                reason: format!("{col} = {v} is out of range"),
            }),
        }
    }

    pub(crate) fn flag(&self, col: &str) -> Result<bool> {
        Ok(self.int(col)? != 0)
    }

    pub(crate) fn uuid(&self, col: &str) -> Result<Uuid> {
        parse_uuid(&self.text(col)?)
    }

    pub(crate) fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>> {
        self.opt_text(col)?.as_deref().map(parse_uuid).transpose()
    }

    pub(crate) fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        time(self.int(col)?)
    }

    pub(crate) fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        self.opt_int(col)?.map(time).transpose()
    }

    pub(crate) fn json(&self, col: &str) -> Result<serde_json::Value> {
        parse_json(&self.text(col)?)
    }

    pub(crate) fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>> {
        self.opt_text(col)?.as_deref().map(parse_json).transpose()
    }
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| Error::Corrupt {
        what: "id",
        reason: format!("{s:?}: {e}"),
    })
}

fn parse_json(s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt {
        what: "JSON",
        reason: e.to_string(),
    })
}

/// Whether `e` is a unique-constraint violation (an id given twice).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                // The Any driver does not always carry the kind over;
                // both engines' messages say it.
                || d.message().contains("UNIQUE constraint failed")
                || d.message().contains("duplicate key value")
        }
        _ => false,
    }
}

/// An `i64` for a `u64` count or size (saturating; no real value is near
/// the limit).
pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
