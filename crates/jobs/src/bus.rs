//! Signals between the instances of [`Jobs`](crate::Jobs): build events,
//! finished tasks and "there is work in the queue".
//!
//! In one process they go through a tokio broadcast channel. Across
//! processes they ride on the transport the deployment already has:
//! Redis pub/sub when the queue is Redis, else PostgreSQL `LISTEN/NOTIFY`
//! when the database is PostgreSQL (sent inside the writing transaction,
//! so only committed changes are announced, in commit order), else
//! nothing (SQLite: one machine; another process on the same file sees
//! changes at its next periodic look).
//!
//! Signals are hints. Every listener can recover what it missed from the
//! database: build events carry their number, so a gap is read back from
//! the stored events, and a [`Signal::Resync`] after a reconnection or an
//! overflow makes listeners look there.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::error::{Result, db, redis as redis_err};
use crate::model::BuildEvent;

/// Channel names, PostgreSQL's and Redis's.
const PG_EVENTS: &str = "hoist_events";
const PG_TASKS: &str = "hoist_tasks";
const PG_QUEUE: &str = "hoist_queue";
pub(crate) const REDIS_EVENTS: &str = "hoist:events";
pub(crate) const REDIS_TASKS: &str = "hoist:tasks";
pub(crate) const REDIS_QUEUE: &str = "hoist:queue-signal";

/// PostgreSQL refuses `NOTIFY` payloads of 8000 bytes or more; a bigger
/// event goes out without its body and listeners read it back.
const PG_PAYLOAD_MAX: usize = 7900;

/// Local fan-out depth; a listener that falls further behind resyncs.
const CAPACITY: usize = 1024;

/// One thing that happened.
#[derive(Clone, Debug)]
pub(crate) enum Signal {
    /// Build `id` stored event `seq`; `event` is absent when it was too
    /// big to send.
    Build {
        id: Uuid,
        seq: u64,
        event: Option<BuildEvent>,
    },
    /// Task `id` got its final result.
    TaskDone(Uuid),
    /// Work was queued or given back.
    Queue,
    /// Signals may have been lost: look in the database.
    Resync,
}

/// A build event on the wire.
#[derive(Serialize, Deserialize)]
struct Wire {
    build: Uuid,
    seq: u64,
    event: Option<BuildEvent>,
}

/// Where signals go beyond this process.
#[derive(Clone)]
pub(crate) enum Remote {
    None,
    Postgres,
    Redis(redis::aio::ConnectionManager),
}

/// The signal hub of one [`Jobs`](crate::Jobs).
pub(crate) struct Bus {
    tx: broadcast::Sender<Signal>,
    queue: Arc<Notify>,
    remote: Remote,
    tasks: Vec<AbortHandle>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Bus {
    /// A hub that only reaches this process.
    pub(crate) fn in_process() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            queue: Arc::new(Notify::new()),
            remote: Remote::None,
            tasks: Vec::new(),
        }
    }

    /// A hub on PostgreSQL `LISTEN/NOTIFY`, listening before it returns
    /// so that nothing sent after [`Jobs::open`](crate::Jobs::open) is
    /// missed.
    pub(crate) async fn postgres(url: &str) -> Result<Self> {
        let mut bus = Self::in_process();
        bus.remote = Remote::Postgres;
        let mut listener = PgListener::connect(url)
            .await
            .map_err(db("connect the LISTEN connection"))?;
        listener
            .listen_all([PG_EVENTS, PG_TASKS, PG_QUEUE])
            .await
            .map_err(db("LISTEN"))?;
        let (tx, queue) = (bus.tx.clone(), bus.queue.clone());
        bus.tasks
            .push(tokio::spawn(pg_listen(listener, tx, queue)).abort_handle());
        Ok(bus)
    }

    /// A hub on Redis pub/sub, subscribed before it returns.
    pub(crate) async fn redis(
        client: redis::Client,
        conn: redis::aio::ConnectionManager,
    ) -> Result<Self> {
        let mut bus = Self::in_process();
        bus.remote = Remote::Redis(conn);
        let pubsub = redis_subscribe(&client).await?;
        let (tx, queue) = (bus.tx.clone(), bus.queue.clone());
        bus.tasks
            .push(tokio::spawn(redis_listen(client, pubsub, tx, queue)).abort_handle());
        Ok(bus)
    }

    /// Keeps `task` running as long as the hub, and stops it with it.
    pub(crate) fn adopt(&mut self, task: AbortHandle) {
        self.tasks.push(task);
    }

    /// Receives every signal from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.tx.subscribe()
    }

    /// Woken when work is queued or given back.
    pub(crate) fn queue_notify(&self) -> &Notify {
        &self.queue
    }

    /// Sends `signals` to other processes as part of the transaction on
    /// `conn` (PostgreSQL only; a no-op otherwise).
    pub(crate) async fn in_transaction(
        &self,
        conn: &mut AnyConnection,
        signals: &[Signal],
    ) -> Result<()> {
        if !matches!(self.remote, Remote::Postgres) {
            return Ok(());
        }
        for signal in signals {
            let (channel, payload) = match signal {
                Signal::Build { id, seq, event } => {
                    let mut payload = wire(*id, *seq, event.clone());
                    if payload.len() > PG_PAYLOAD_MAX {
                        payload = wire(*id, *seq, None);
                    }
                    (PG_EVENTS, payload)
                }
                Signal::TaskDone(id) => (PG_TASKS, id.to_string()),
                Signal::Queue => (PG_QUEUE, String::new()),
                Signal::Resync => continue,
            };
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(&mut *conn)
                .await
                .map_err(db("NOTIFY"))?;
        }
        Ok(())
    }

    /// Announces `signals` after their changes are committed: here at
    /// once, and through Redis when that is the transport. A Redis
    /// failure is logged, not returned: the change is stored, and
    /// listeners elsewhere find it at their next look.
    pub(crate) async fn committed(&self, signals: Vec<Signal>) {
        if let Remote::Redis(conn) = &self.remote {
            let mut pipe = redis::pipe();
            for signal in &signals {
                match signal {
                    Signal::Build { id, seq, event } => {
                        pipe.publish(REDIS_EVENTS, wire(*id, *seq, event.clone()));
                    }
                    Signal::TaskDone(id) => {
                        pipe.publish(REDIS_TASKS, id.to_string());
                    }
                    // The queue scripts publish their own.
                    Signal::Queue | Signal::Resync => {}
                }
            }
            let mut conn = conn.clone();
            // Redis refuses an empty pipeline ("empty command").
            let empty = pipe.cmd_iter().next().is_none();
            if !empty && let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(error = %e, "jobs: publishing to redis failed");
            }
        }
        for signal in signals {
            self.local(signal);
        }
    }

    /// Delivers `signal` in this process.
    pub(crate) fn local(&self, signal: Signal) {
        deliver(&self.tx, &self.queue, signal);
    }
}

fn deliver(tx: &broadcast::Sender<Signal>, queue: &Notify, signal: Signal) {
    if matches!(signal, Signal::Queue | Signal::Resync) {
        queue.notify_waiters();
    }
    // No receiver is fine: nobody listens.
    let _ = tx.send(signal);
}

fn wire(build: Uuid, seq: u64, event: Option<BuildEvent>) -> String {
    serde_json::to_string(&Wire { build, seq, event }).expect("events serialize")
}

/// The signal a received build-event payload stands for.
fn parse_wire(payload: &str) -> Option<Signal> {
    match serde_json::from_str::<Wire>(payload) {
        Ok(w) => Some(Signal::Build {
            id: w.build,
            seq: w.seq,
            event: w.event,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "jobs: unreadable build event signal");
            None
        }
    }
}

fn parse_task(payload: &str) -> Option<Signal> {
    Uuid::parse_str(payload).ok().map(Signal::TaskDone)
}

/// Forwards notifications until the hub is dropped. `PgListener`
/// reconnects by itself; a `None` from it means some were lost.
async fn pg_listen(mut listener: PgListener, tx: broadcast::Sender<Signal>, queue: Arc<Notify>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                let signal = match n.channel() {
                    PG_EVENTS => parse_wire(n.payload()),
                    PG_TASKS => parse_task(n.payload()),
                    PG_QUEUE => Some(Signal::Queue),
                    _ => None,
                };
                if let Some(signal) = signal {
                    deliver(&tx, &queue, signal);
                }
            }
            Ok(None) => deliver(&tx, &queue, Signal::Resync),
            Err(e) => {
                tracing::warn!(error = %e, "jobs: LISTEN connection failed; retrying");
                deliver(&tx, &queue, Signal::Resync);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn redis_subscribe(client: &redis::Client) -> Result<redis::aio::PubSub> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(redis_err("connect for SUBSCRIBE"))?;
    pubsub
        .subscribe(&[REDIS_EVENTS, REDIS_TASKS, REDIS_QUEUE])
        .await
        .map_err(redis_err("SUBSCRIBE"))?;
    Ok(pubsub)
}

/// Forwards messages until the hub is dropped, subscribing again after a
/// lost connection.
async fn redis_listen(
    client: redis::Client,
    first: redis::aio::PubSub,
    tx: broadcast::Sender<Signal>,
    queue: Arc<Notify>,
) {
    let mut next = Some(first);
    loop {
        let pubsub = match next.take() {
            Some(p) => p,
            None => match redis_subscribe(&client).await {
                Ok(p) => {
                    deliver(&tx, &queue, Signal::Resync);
                    p
                }
                Err(e) => {
                    tracing::warn!(error = %e, "jobs: redis SUBSCRIBE failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let payload = String::from_utf8_lossy(msg.get_payload_bytes());
            let signal = match msg.get_channel_name() {
                REDIS_EVENTS => parse_wire(&payload),
                REDIS_TASKS => parse_task(&payload),
                REDIS_QUEUE => Some(Signal::Queue),
                _ => None,
            };
            if let Some(signal) = signal {
                deliver(&tx, &queue, signal);
            }
        }
        deliver(&tx, &queue, Signal::Resync);
    }
}
