//! API keys. A secret is `hoist_` + a 16-hex-digit lookup id + `_` + 64
//! hex digits (256 random bits). Only the lookup id and the SHA-256 of the
//! whole secret are stored; authenticating finds the key by lookup id and
//! compares hashes in constant time. The secret is returned once, at
//! creation.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::Jobs;
use crate::db::{Cols, now_us, time};
use crate::error::{Result, db};
use crate::model::ApiKey;

const PREFIX: &str = "hoist_";
const COLUMNS: &str = "id, name, owner, lookup, created_at, revoked_at, last_used_at";

/// `last_used_at` is written at most this often per key (µs), so that
/// authenticating is a read most of the time.
const LAST_USED_EVERY: i64 = 60_000_000;

fn api_key(row: &AnyRow) -> Result<ApiKey> {
    let c = Cols(row);
    Ok(ApiKey {
        id: c.uuid("id")?,
        name: c.text("name")?,
        owner: c.text("owner")?,
        prefix: format!("{PREFIX}{}", c.text("lookup")?),
        created_at: c.time("created_at")?,
        revoked_at: c.opt_time("revoked_at")?,
        last_used_at: c.opt_time("last_used_at")?,
    })
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Jobs {
    /// Makes a key for `owner` and returns it with its secret. The secret
    /// is not stored: show it once; it cannot be read back.
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs) -> jobs::Result<()> {
    /// let (key, secret) = jobs.create_key("ci", "acme").await?;
    /// let found = jobs.authenticate(&secret).await?.expect("a fresh key works");
    /// assert_eq!(found.id, key.id);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_key(&self, name: &str, owner: &str) -> Result<(ApiKey, String)> {
        let mut random = [0u8; 40];
        rand::rng().fill_bytes(&mut random);
        let lookup = hex::encode(&random[..8]);
        let secret = format!("{PREFIX}{lookup}_{}", hex::encode(&random[8..]));
        let now = now_us();
        let key = ApiKey {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            owner: owner.to_owned(),
            prefix: format!("{PREFIX}{lookup}"),
            created_at: time(now)?,
            revoked_at: None,
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, name, owner, lookup, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.to_string())
        .bind(name)
        .bind(owner)
        .bind(&lookup)
        .bind(hash(&secret))
        .bind(now)
        .execute(&self.inner.db.pool)
        .await
        .map_err(db("create an API key"))?;
        Ok((key, secret))
    }

    /// The key `secret` belongs to, unless it is unknown or revoked.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>> {
        let Some(lookup) = secret
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map(|(lookup, _)| lookup)
        else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, hash FROM api_keys WHERE lookup = $1 AND revoked_at IS NULL"
        ))
        .bind(lookup)
        .fetch_optional(&self.inner.db.pool)
        .await
        .map_err(db("look up an API key"))?;
        let Some(row) = row else { return Ok(None) };
        let stored = Cols(&row).text("hash")?;
        if !bool::from(stored.as_bytes().ct_eq(hash(secret).as_bytes())) {
            return Ok(None);
        }
        let mut key = api_key(&row)?;
        let now = now_us();
        let touched = sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(key.id.to_string())
        .bind(now - LAST_USED_EVERY)
        .execute(&self.inner.db.pool)
        .await
        .map_err(db("note an API key's use"))?;
        if touched.rows_affected() == 1 {
            key.last_used_at = Some(time(now)?);
        }
        Ok(Some(key))
    }

    /// Every key, revoked ones too, oldest first.
    pub async fn keys(&self) -> Result<Vec<ApiKey>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.inner.db.pool)
        .await
        .map_err(db("list API keys"))?
        .iter()
        .map(api_key)
        .collect()
    }

    /// Revokes a key; false when it was revoked already or is not there.
    pub async fn revoke_key(&self, id: Uuid) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_us())
                .bind(id.to_string())
                .execute(&self.inner.db.pool)
                .await
                .map_err(db("revoke an API key"))?;
        Ok(done.rows_affected() == 1)
    }
}
