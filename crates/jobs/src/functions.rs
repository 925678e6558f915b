//! Function records: created by the API, pointed at their image by a
//! successful build, deleted softly.

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::db::{Cols, now_us, time};
use crate::error::{Error, Result, db};
use crate::model::{Function, Listed, NewFunction, Page};
use crate::{Jobs, db as dbm};

const COLUMNS: &str = "id, owner, name, version, code_hash, requirements, base, image, \
                       image_digest, build_id, created_at, deleted_at";

fn function(row: &AnyRow) -> Result<Function> {
    let c = Cols(row);
    Ok(Function {
        id: c.uuid("id")?,
        owner: c.text("owner")?,
        name: c.text("name")?,
        version: c.text("version")?,
        code_hash: c.text("code_hash")?,
        requirements: c.text("requirements")?,
        base: c.opt_text("base")?,
        image: c.opt_text("image")?,
        image_digest: c.opt_text("image_digest")?,
        build_id: c.opt_uuid("build_id")?,
        created_at: c.time("created_at")?,
        deleted_at: c.opt_time("deleted_at")?,
    })
}

impl Jobs {
    /// Records a new function (not built yet).
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs) -> jobs::Result<()> {
    /// use jobs::NewFunction;
    /// let f = jobs
    ///     .create_function(NewFunction {
    ///         owner: "acme".into(),
    ///         name: "resize".into(),
    ///         version: "1.0.0".into(),
    ///         code_hash: "sha256:…".into(),
    ///         requirements: "pillow==11.0.0\n".into(),
    ///         base: None,
    ///     })
    ///     .await?;
    /// assert_eq!(jobs.function(f.id).await?.unwrap().name, "resize");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_function(&self, new: NewFunction) -> Result<Function> {
        let now = now_us();
        let f = Function {
            id: Uuid::now_v7(),
            owner: new.owner,
            name: new.name,
            version: new.version,
            code_hash: new.code_hash,
            requirements: new.requirements,
            base: new.base,
            image: None,
            image_digest: None,
            build_id: None,
            created_at: time(now)?,
            deleted_at: None,
        };
        sqlx::query(
            "INSERT INTO functions (id, owner, name, version, code_hash, requirements, base, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(f.id.to_string())
        .bind(&f.owner)
        .bind(&f.name)
        .bind(&f.version)
        .bind(&f.code_hash)
        .bind(&f.requirements)
        .bind(f.base.as_deref())
        .bind(now)
        .execute(&self.inner.db.pool)
        .await
        .map_err(db("create a function"))?;
        Ok(f)
    }

    /// The function with this id, deleted or not (see `deleted_at`).
    pub async fn function(&self, id: Uuid) -> Result<Option<Function>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM functions WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.inner.db.pool)
            .await
            .map_err(db("read a function"))?
            .as_ref()
            .map(function)
            .transpose()
    }

    /// Functions not deleted, of `owner` or of everyone, newest first.
    pub async fn functions(&self, owner: Option<&str>, page: Page) -> Result<Listed<Function>> {
        let filter = if owner.is_some() {
            "deleted_at IS NULL AND owner = $1"
        } else {
            "deleted_at IS NULL"
        };
        let n = if owner.is_some() { 2 } else { 1 };
        let select = format!(
            "SELECT {COLUMNS} FROM functions WHERE {filter} \
             ORDER BY created_at DESC, id DESC LIMIT ${n} OFFSET ${}",
            n + 1
        );
        let count = format!("SELECT COUNT(*) AS n FROM functions WHERE {filter}");
        let mut q = sqlx::query(&select);
        let mut c = sqlx::query(&count);
        if let Some(owner) = owner {
            q = q.bind(owner);
            c = c.bind(owner);
        }
        let rows = q
            .bind(i64::from(page.limit))
            .bind(dbm::i64_of(page.offset))
            .fetch_all(&self.inner.db.pool)
            .await
            .map_err(db("list functions"))?;
        let total: i64 = c
            .fetch_one(&self.inner.db.pool)
            .await
            .map_err(db("count functions"))?
            .try_get("n")
            .map_err(db("count functions"))?;
        Ok(Listed {
            items: rows.iter().map(function).collect::<Result<_>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    /// Marks the function deleted; false when it was already, or is not
    /// there. Its record stays, for builds and tasks that refer to it.
    pub async fn delete_function(&self, id: Uuid) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE functions SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now_us())
        .bind(id.to_string())
        .execute(&self.inner.db.pool)
        .await
        .map_err(db("delete a function"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Points the function at its image (`name@sha256:…`) and digest.
    /// [`Jobs::finish_build`] does this itself for a completed function
    /// build, in the same transaction.
    pub async fn set_function_image(&self, id: Uuid, image: &str, digest: &str) -> Result<()> {
        let done = sqlx::query("UPDATE functions SET image = $1, image_digest = $2 WHERE id = $3")
            .bind(image)
            .bind(digest)
            .bind(id.to_string())
            .execute(&self.inner.db.pool)
            .await
            .map_err(db("set a function's image"))?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound {
                kind: "function",
                id,
            });
        }
        Ok(())
    }

    /// Every function name ever recorded, as `(owner, name, live)`: `live`
    /// is false when every version of it is deleted. Retention removes the
    /// images of functions that are not live.
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs) -> jobs::Result<()> {
    /// for (owner, name, live) in jobs.function_names().await? {
    ///     println!("{owner}/{name}: {}", if live { "live" } else { "deleted" });
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn function_names(&self) -> Result<Vec<(String, String, bool)>> {
        let rows = sqlx::query(
            "SELECT owner, name, SUM(CASE WHEN deleted_at IS NULL THEN 1 ELSE 0 END) AS live \
             FROM functions GROUP BY owner, name ORDER BY owner, name",
        )
        .fetch_all(&self.inner.db.pool)
        .await
        .map_err(db("list function names"))?;
        rows.iter()
            .map(|row| {
                let c = Cols(row);
                Ok((
                    c.text("owner")?,
                    c.text("name")?,
                    c.count::<u64>("live")? > 0,
                ))
            })
            .collect()
    }
}
