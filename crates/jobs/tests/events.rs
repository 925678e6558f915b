//! Build events: a subscriber that joins mid-build gets the backlog and
//! then every later event once, in order, until the final one; also
//! when the events come from another instance (PostgreSQL `NOTIFY`,
//! Redis pub/sub), as from a worker on another machine.

use std::time::Duration;

use futures_util::StreamExt;
use jobs::{BuildEvent, BuildKind, BuildResult, BuildStatus, BuildUpdate, Jobs, NewBuild};
use serde_json::json;
use uuid::Uuid;

use crate::harness::{Backend, Env};
use crate::on;

/// Collects the live events until the stream ends (bounded in time).
async fn drain(live: &mut jobs::LiveEvents) -> Vec<BuildEvent> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), live.next()).await {
            Ok(Some(e)) => got.push(e),
            Ok(None) => return got,
            Err(_) => panic!("live stream stalled after {} events: {got:?}", got.len()),
        }
    }
}

fn assert_complete_sequence(all: &[BuildEvent]) {
    let seqs: Vec<u64> = all.iter().map(BuildEvent::seq).collect();
    let want: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(seqs, want, "every event once, in order");
    assert!(all.last().unwrap().is_final());
    assert_eq!(all.iter().filter(|e| e.is_final()).count(), 1);
}

/// The instance a worker on another machine would have: a second one
/// where the backend has a transport between instances, else the same.
async fn worker_side(env: &Env) -> Jobs {
    match env.backend {
        Backend::Sqlite => env.jobs.clone(),
        _ => env.second().await,
    }
}

on!(
    backlog_then_live,
    [sqlite, postgres, postgres_redis, sqlite_redis]
);
async fn backlog_then_live(env: Env) {
    let api = &env.jobs;
    let worker = worker_side(&env).await;
    let id = api
        .create_build(NewBuild::new(BuildKind::Release, json!({})))
        .await
        .unwrap()
        .id;
    let step = |p: u8| BuildUpdate {
        status: Some(BuildStatus::Building),
        progress: Some(p),
        current_step: Some(format!("step {p}")),
    };
    worker.update_build(id, step(5)).await.unwrap();
    for i in 0..3 {
        worker.log_build(id, &format!("early {i}")).await.unwrap();
    }

    // Joins mid-build while the worker keeps going.
    let producer = {
        let worker = worker.clone();
        tokio::spawn(async move {
            for i in 0..60u8 {
                if i % 10 == 0 {
                    worker.update_build(id, step(10 + i)).await.unwrap();
                } else {
                    worker.log_build(id, &format!("line {i}")).await.unwrap();
                }
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            let result = BuildResult::Completed {
                image_url: "registry.test/app:v1".into(),
                image_digest: "sha256:ab".into(),
                size_bytes: 42,
            };
            assert!(worker.finish_build(id, result).await.unwrap());
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut stream = api.subscribe(id).await.unwrap();
    assert!(stream.backlog.len() >= 4, "the early events are stored");
    assert_eq!(
        stream.backlog[0],
        BuildEvent::Progress {
            seq: 1,
            timestamp: stream.backlog[0].timestamp(),
            status: BuildStatus::Building,
            progress: 5,
            message: Some("step 5".into()),
        }
    );
    let live = drain(&mut stream.live).await;
    producer.await.unwrap();
    let all: Vec<BuildEvent> = stream.backlog.iter().cloned().chain(live).collect();
    assert_eq!(all.len(), 1 + 3 + 60 + 1);
    assert_complete_sequence(&all);
    match all.last().unwrap() {
        BuildEvent::Complete {
            status,
            image_digest,
            size_bytes,
            ..
        } => {
            assert_eq!(
                (*status, image_digest.as_str(), *size_bytes),
                (BuildStatus::Completed, "sha256:ab", 42)
            );
        }
        other => panic!("final event {other:?}"),
    }
    // The WebSocket messages of the seed.
    let v = serde_json::to_value(&all[1]).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["line"].as_str()),
        (Some("log"), Some("early 0"))
    );
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    let v = serde_json::to_value(all.last().unwrap()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["status"].as_str()),
        (Some("complete"), Some("completed"))
    );

    // A late subscriber gets everything as backlog and a stream that ends.
    let mut late = api.subscribe(id).await.unwrap();
    assert_eq!(late.backlog, all);
    assert!(late.live.next().await.is_none());
}

on!(concurrent_writers, [sqlite, postgres, postgres_redis]);
/// Two workers (instances) write to one build at once: the subscriber
/// still sees each number once, in order.
async fn concurrent_writers(env: Env) {
    let api = &env.jobs;
    let id = api
        .create_build(NewBuild::new(BuildKind::Release, json!({})))
        .await
        .unwrap()
        .id;
    let mut stream = api.subscribe(id).await.unwrap();
    assert!(stream.backlog.is_empty());
    let mut writers = Vec::new();
    for w in 0..2 {
        let jobs = worker_side(&env).await;
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                jobs.log_build(id, &format!("w{w} {i}")).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    api.finish_build(
        id,
        BuildResult::Failed {
            error: "boom".into(),
            step: Some("push".into()),
        },
    )
    .await
    .unwrap();
    let live = drain(&mut stream.live).await;
    assert_eq!(live.len(), 81);
    assert_complete_sequence(&live);
    assert!(matches!(
        live.last().unwrap(),
        BuildEvent::Error { status: BuildStatus::Failed, error, step: Some(step), .. } if error == "boom" && step == "push"
    ));
}

on!(cancel_events, [sqlite, postgres, postgres_redis]);
/// A running build's cancel request reaches its worker's subscription;
/// the worker stops and the stream ends with the cancellation.
async fn cancel_events(env: Env) {
    let api = &env.jobs;
    let worker = worker_side(&env).await;
    let id = api
        .create_build(NewBuild::new(BuildKind::Release, json!({})))
        .await
        .unwrap()
        .id;
    worker
        .update_build(
            id,
            BuildUpdate {
                status: Some(BuildStatus::Building),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut watch = worker.subscribe(id).await.unwrap();
    api.cancel_build(id).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), watch.live.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(next, BuildEvent::CancelRequested { seq: 2, .. }),
        "{next:?}"
    );
    assert!(
        worker
            .finish_build(id, BuildResult::Cancelled)
            .await
            .unwrap()
    );
    let last = drain(&mut watch.live).await;
    assert!(
        matches!(
            last.as_slice(),
            [BuildEvent::Error {
                status: BuildStatus::Cancelled,
                seq: 3,
                ..
            }]
        ),
        "{last:?}"
    );
    assert!(matches!(
        api.subscribe(Uuid::now_v7()).await,
        Err(jobs::Error::NotFound { .. })
    ));
}
