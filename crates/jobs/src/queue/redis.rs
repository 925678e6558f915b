//! The Redis queue: a stream read by one consumer group, for workers on
//! many machines.
//!
//! Keys: the stream `hoist:queue` (group `hoist-workers`), each entry
//! `work` = `build:<id>` or `task:<id>` and `base` = deliveries before
//! it was last re-added; the hash `hoist:queued` from work to its entry,
//! which makes queueing idempotent; `hoist:queue-cursor`, where the scan
//! for abandoned entries goes on from.
//!
//! Every step is one Lua script, so it is atomic:
//!
//! - queue: `XADD` unless the hash has the work already, then `HSET` and
//!   `PUBLISH` a wake-up;
//! - take: `XAUTOCLAIM` of an entry idle longer than the lease (its
//!   consumer died or stalled; the scan resumes where the last one
//!   stopped), else `XREADGROUP >` for a new one; the delivery count comes
//!   from `XPENDING`;
//! - renew: `XCLAIM … JUSTID` (resets the idle time, not the count), only
//!   while `XPENDING` shows this consumer and delivery count;
//! - ack: `XACK` + `XDEL` + `HDEL` under the same check;
//! - release: `XACK` + `XDEL`, then `XADD` again with the deliveries so far
//!   in `base`.
//!
//! Records are written to the database first and queued after the
//! commit. If the process dies between the two, or Redis loses its data,
//! the work is queued again by [`RedisQueue::recover`], which
//! [`Jobs`](crate::Jobs) runs at open and then once a lease: it queues
//! every build and task without a final status that the hash does not
//! know. One instance at a time does it (a `SET NX PX` lock); running it
//! twice is harmless because queueing is idempotent.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use sqlx::Row;
use uuid::Uuid;

use super::{Lease, Token, Work};
use crate::bus::REDIS_QUEUE;
use crate::db::{Db, parse_uuid};
use crate::error::{Error, Result, db, redis as redis_err};

const STREAM: &str = "hoist:queue";
const GROUP: &str = "hoist-workers";
const QUEUED: &str = "hoist:queued";
const CURSOR: &str = "hoist:queue-cursor";
const RECOVER_LOCK: &str = "hoist:queue-recover";

const ENQUEUE: &str = r"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local id = redis.call('XADD', KEYS[1], '*', 'work', ARGV[1], 'base', '0')
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('PUBLISH', KEYS[3], '')
return 1
";

const TAKE: &str = r"
local function field(f, name)
  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end
  return ''
end
local function found(e, deliveries)
  return {e[1], field(e[2], 'work'), field(e[2], 'base'), tostring(deliveries)}
end
local cursor = redis.call('GET', KEYS[2]) or '0-0'
for _ = 1, 10 do
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', 1)
  cursor = r[1]
  local e = r[2][1]
  if e then
    redis.call('SET', KEYS[2], cursor)
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    return found(e, p[1][4])
  end
  if cursor == '0-0' then break end
end
redis.call('SET', KEYS[2], cursor)
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
if not r then return false end
local e = r[1][2][1]
if not e then return false end
return found(e, 1)
";

/// Shared head of the scripts that act on a held entry: returns 0 unless
/// `ARGV[3]` is pending with consumer `ARGV[2]` at delivery `ARGV[4]`.
const HELD: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] or tostring(p[1][4]) ~= ARGV[4] then return 0 end
";

const RENEW: &str = r"
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
";

const ACK: &str = r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if redis.call('HGET', KEYS[2], ARGV[5]) == ARGV[3] then redis.call('HDEL', KEYS[2], ARGV[5]) end
return 1
";

const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

const RELEASE: &str = r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
local id = redis.call('XADD', KEYS[1], '*', 'work', ARGV[5], 'base', ARGV[6])
redis.call('HSET', KEYS[2], ARGV[5], id)
redis.call('PUBLISH', KEYS[3], '')
return 1
";

/// The queue on one Redis server.
#[derive(Clone)]
pub(crate) struct RedisQueue {
    pub(crate) client: redis::Client,
    pub(crate) conn: ConnectionManager,
    enqueue: Script,
    take: Script,
    renew: Script,
    ack: Script,
    release: Script,
    unlock: Script,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue").finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Connects to `url` and makes sure the stream and group exist.
    pub(crate) async fn open(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(redis_err("parse the Redis URL"))?;
        let conn = ConnectionManager::new(client.clone())
            .await
            .map_err(redis_err("connect"))?;
        let q = Self {
            client,
            conn,
            enqueue: Script::new(ENQUEUE),
            take: Script::new(TAKE),
            renew: Script::new(&format!("{HELD}{RENEW}")),
            ack: Script::new(&format!("{HELD}{ACK}")),
            release: Script::new(&format!("{HELD}{RELEASE}")),
            unlock: Script::new(UNLOCK),
        };
        q.create_group().await?;
        Ok(q)
    }

    /// `XGROUP CREATE … MKSTREAM`, from the start of the stream so that
    /// nothing queued before is skipped; an existing group is fine.
    async fn create_group(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(STREAM)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(Error::Redis {
                operation: "create the consumer group",
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Queues `work` unless it is queued already; true when added.
    pub(crate) async fn enqueue(&self, work: Work) -> Result<bool> {
        let mut conn = self.conn.clone();
        let added: i64 = self
            .enqueue
            .key(STREAM)
            .key(QUEUED)
            .key(REDIS_QUEUE)
            .arg(key(work))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("queue work"))?;
        Ok(added == 1)
    }

    pub(crate) async fn take(&self, worker: &str, lease: Duration) -> Result<Option<Lease>> {
        let idle = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let got = match self.take_once(worker, idle).await {
            // Redis lost the group (a restart without persistence): make
            // it again; recovery queues the work again.
            Err(e) if e.code() == Some("NOGROUP") => {
                self.create_group().await?;
                self.take_once(worker, idle).await
            }
            other => other,
        }
        .map_err(redis_err("take from the queue"))?;
        let Some(fields) = got else { return Ok(None) };
        let [entry, work, base, deliveries] =
            <[String; 4]>::try_from(fields).map_err(|f| Error::Corrupt {
                what: "queue entry",
                reason: format!("unexpected reply {f:?}"),
            })?;
        let work = parse_key(&work)?;
        let base: u64 = base.parse().unwrap_or(0);
        let deliveries: u64 = deliveries.parse().map_err(|_| Error::Corrupt {
            what: "queue entry",
            reason: format!("delivery count {deliveries:?}"),
        })?;
        Ok(Some(Lease {
            work,
            attempt: u32::try_from(base + deliveries).unwrap_or(u32::MAX),
            worker: worker.to_owned(),
            token: Token::Redis {
                entry,
                deliveries,
                base,
            },
        }))
    }

    async fn take_once(&self, worker: &str, idle: u64) -> redis::RedisResult<Option<Vec<String>>> {
        let mut conn = self.conn.clone();
        self.take
            .key(STREAM)
            .key(CURSOR)
            .arg(GROUP)
            .arg(worker)
            .arg(idle)
            .invoke_async(&mut conn)
            .await
    }

    /// Runs `script` on `lease`'s entry if it is still held as taken.
    async fn held(&self, script: &Script, lease: &Lease, extra: Option<u64>) -> Result<bool> {
        let Token::Redis {
            entry, deliveries, ..
        } = &lease.token
        else {
            return Ok(false);
        };
        let mut conn = self.conn.clone();
        let mut invocation = script.key(STREAM);
        invocation
            .key(QUEUED)
            .key(REDIS_QUEUE)
            .arg(GROUP)
            .arg(&lease.worker)
            .arg(entry)
            .arg(deliveries)
            .arg(key(lease.work));
        if let Some(extra) = extra {
            invocation.arg(extra);
        }
        let done: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("update a lease"))?;
        Ok(done == 1)
    }

    pub(crate) async fn renew(&self, lease: &Lease) -> Result<bool> {
        self.held(&self.renew, lease, None).await
    }

    pub(crate) async fn ack(&self, lease: &Lease) -> Result<bool> {
        self.held(&self.ack, lease, None).await
    }

    pub(crate) async fn release(&self, lease: &Lease) -> Result<bool> {
        let Token::Redis {
            deliveries, base, ..
        } = &lease.token
        else {
            return Ok(false);
        };
        // This delivery does not count.
        let base = base + deliveries.saturating_sub(1);
        self.held(&self.release, lease, Some(base)).await
    }

    pub(crate) async fn depth(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        conn.xlen(STREAM).await.map_err(redis_err("XLEN"))
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(redis_err("PING"))
    }

    /// Queues every unfinished build and task the queue does not know,
    /// unless another instance is at it (then returns `None`). Returns
    /// how many were queued.
    pub(crate) async fn recover(&self, store: &Db, lock_for: Duration) -> Result<Option<usize>> {
        let mut conn = self.conn.clone();
        let token = Uuid::new_v4().to_string();
        let lock: Option<String> = redis::cmd("SET")
            .arg(RECOVER_LOCK)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(
                u64::try_from(lock_for.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .query_async(&mut conn)
            .await
            .map_err(redis_err("take the recovery lock"))?;
        if lock.is_none() {
            return Ok(None);
        }
        let queued = self.requeue_unfinished(store).await;
        // Let the next run go at once, unless the lock ran out and is
        // someone else's now.
        let _: redis::RedisResult<i64> = self
            .unlock
            .key(RECOVER_LOCK)
            .arg(&token)
            .invoke_async(&mut conn)
            .await;
        queued.map(Some)
    }

    async fn requeue_unfinished(&self, store: &Db) -> Result<usize> {
        let mut queued = 0;
        for (table, work, open) in [
            (
                "builds",
                Work::Build as fn(Uuid) -> Work,
                "'pending', 'downloading_artifacts', 'building', 'pushing'",
            ),
            ("tasks", Work::Task, "'pending', 'running'"),
        ] {
            let rows = sqlx::query(&format!(
                "SELECT id FROM {table} WHERE status IN ({open}) ORDER BY created_at"
            ))
            .fetch_all(&store.pool)
            .await
            .map_err(db("list unfinished work"))?;
            for row in rows {
                let id: String = row.try_get("id").map_err(db("list unfinished work"))?;
                if self.enqueue(work(parse_uuid(&id)?)).await? {
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }
}

/// `build:<id>` or `task:<id>`.
fn key(work: Work) -> String {
    format!("{}:{}", work.kind(), work.id())
}

fn parse_key(s: &str) -> Result<Work> {
    let (kind, id) = s.split_once(':').ok_or_else(|| Error::Corrupt {
        what: "queue entry",
        reason: format!("work {s:?}"),
    })?;
    Work::parse(kind, id)
}
