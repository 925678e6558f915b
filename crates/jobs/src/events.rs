//! Following a build: the stored backlog, then live events with no gap
//! and no duplicate.
//!
//! [`Jobs::subscribe`] starts listening to signals *before* it reads the
//! stored events, so nothing falls between the two. Every event has a
//! number; the live stream hands out each number once, in order: numbers
//! it has seen are dropped, and a number further ahead than the next
//! expected one (an announcement overtook another, or one was lost, or
//! was too big to send) makes it read the missing events from the
//! database, where every announced event is already committed. Lost
//! announcements are also caught by a look at the database every
//! [`LOOK_AGAIN`] without news.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::stream::BoxStream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use uuid::Uuid;

use crate::Jobs;
use crate::builds::parse_event;
use crate::bus::Signal;
use crate::db::{Cols, i64_of};
use crate::error::{Error, Result, db};
use crate::model::BuildEvent;

/// How long a live stream waits for news before it looks in the
/// database itself.
pub(crate) const LOOK_AGAIN: Duration = Duration::from_secs(2);

/// A build's events: those stored when [`Jobs::subscribe`] was called,
/// and the ones after them as they happen.
#[derive(Debug)]
#[non_exhaustive]
pub struct BuildStream {
    /// Stored events, oldest first (at most the last
    /// [`MAX_LOG_LINES`](crate::MAX_LOG_LINES) log lines). Ends
    /// with the final event if the build is final.
    pub backlog: Vec<BuildEvent>,
    /// Every later event, in order, ending after the final one.
    pub live: LiveEvents,
}

/// The live part of a [`BuildStream`]: a stream of [`BuildEvent`]s that
/// continues exactly after the backlog and ends after the build's final
/// event (at once when the backlog holds it).
pub struct LiveEvents {
    inner: BoxStream<'static, BuildEvent>,
}

impl std::fmt::Debug for LiveEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEvents").finish_non_exhaustive()
    }
}

impl Stream for LiveEvents {
    type Item = BuildEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BuildEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// The state behind [`LiveEvents`].
struct Follow {
    jobs: Jobs,
    id: Uuid,
    rx: broadcast::Receiver<Signal>,
    /// The number the next event handed out must have (at least).
    next: u64,
    /// Events read or received, in order, not handed out yet.
    ready: VecDeque<BuildEvent>,
    done: bool,
    looked: Instant,
}

impl Follow {
    async fn next_event(&mut self) -> Option<BuildEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                if event.seq() < self.next {
                    continue;
                }
                self.next = event.seq() + 1;
                if event.is_final() {
                    self.done = true;
                    self.ready.clear();
                }
                return Some(event);
            }
            if self.done {
                return None;
            }
            let received = tokio::time::timeout_at(self.looked + LOOK_AGAIN, self.rx.recv()).await;
            match received {
                Ok(Ok(Signal::Build { id, seq, event })) if id == self.id => {
                    if seq < self.next {
                        continue;
                    }
                    match event {
                        Some(event) if seq == self.next => self.ready.push_back(event),
                        _ => self.read_stored().await,
                    }
                }
                Ok(Ok(Signal::Resync) | Err(RecvError::Lagged(_))) | Err(_) => {
                    self.read_stored().await;
                }
                Ok(Ok(_)) => {}
                // The hub is gone only when every `Jobs` is, and this
                // holds one; look in the database all the same.
                Ok(Err(RecvError::Closed)) => {
                    self.read_stored().await;
                    tokio::time::sleep(LOOK_AGAIN).await;
                }
            }
        }
    }

    /// Queues every stored event from `next` on. Retries until the
    /// database answers: the stream has no error item, and a subscriber
    /// should see the build through.
    async fn read_stored(&mut self) {
        self.looked = Instant::now();
        loop {
            match self.jobs.stored_events(self.id, self.next).await {
                Ok(events) => {
                    self.ready.extend(events);
                    return;
                }
                Err(e) => {
                    tracing::warn!(build = %self.id, error = %e, "jobs: reading build events failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

impl Jobs {
    /// Follows a build: its stored events, then live ones. For a late
    /// WebSocket client: send `backlog`, then forward `live` until it
    /// ends.
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs, id: uuid::Uuid) -> jobs::Result<()> {
    /// use futures_util::StreamExt;
    /// let mut stream = jobs.subscribe(id).await?;
    /// for event in &stream.backlog {
    ///     println!("{}", serde_json::to_string(event).unwrap());
    /// }
    /// while let Some(event) = stream.live.next().await {
    ///     println!("{}", serde_json::to_string(&event).unwrap());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe(&self, id: Uuid) -> Result<BuildStream> {
        let rx = self.inner.bus.subscribe();
        if self.build(id).await?.is_none() {
            return Err(Error::NotFound { kind: "build", id });
        }
        let backlog = self.stored_events(id, 0).await?;
        let follow = Follow {
            jobs: self.clone(),
            id,
            rx,
            next: backlog.last().map_or(1, |e| e.seq() + 1),
            ready: VecDeque::new(),
            done: backlog.last().is_some_and(BuildEvent::is_final),
            looked: Instant::now(),
        };
        let live = futures_util::stream::unfold(follow, |mut follow| async move {
            follow.next_event().await.map(|event| (event, follow))
        });
        Ok(BuildStream {
            backlog,
            live: LiveEvents {
                inner: Box::pin(live),
            },
        })
    }

    /// Stored events of build `id` numbered `from` or later, in order.
    pub(crate) async fn stored_events(&self, id: Uuid, from: u64) -> Result<Vec<BuildEvent>> {
        let rows = sqlx::query(
            "SELECT body FROM build_events WHERE build_id = $1 AND seq >= $2 ORDER BY seq",
        )
        .bind(id.to_string())
        .bind(i64_of(from))
        .fetch_all(&self.inner.db.pool)
        .await
        .map_err(db("read build events"))?;
        rows.iter()
            .map(|row| parse_event(&Cols(row).text("body")?))
            .collect()
    }
}
