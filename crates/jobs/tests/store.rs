//! Every record method on SQLite and PostgreSQL: functions, builds,
//! tasks, API keys, image usage.

use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use jobs::{
    BuildFilter, BuildKind, BuildResult, BuildStatus, BuildUpdate, Error, NewBuild, NewFunction,
    NewTask, Page, TaskResult, TaskStatus, UsageKind,
};
use serde_json::json;
use uuid::Uuid;

use crate::harness::Env;
use crate::on;

fn function(owner: &str, name: &str) -> NewFunction {
    NewFunction {
        owner: owner.into(),
        name: name.into(),
        version: "1.0.0".into(),
        code_hash: format!("sha256:{name}"),
        requirements: "numpy==2.1.0\n".into(),
        base: None,
    }
}

fn task_for(function_id: Uuid) -> NewTask {
    NewTask {
        id: None,
        function_id,
        image: "registry.test/fn@sha256:00".into(),
        inputs_key: "inputs/x.json".into(),
        created_by: Some("key-a".into()),
    }
}

on!(functions, [sqlite, postgres]);
async fn functions(env: Env) {
    let jobs = &env.jobs;
    let mut acme = Vec::new();
    for i in 0..5 {
        acme.push(
            jobs.create_function(function("acme", &format!("f{i}")))
                .await
                .unwrap(),
        );
    }
    let other = jobs.create_function(function("other", "g")).await.unwrap();

    let got = jobs.function(acme[0].id).await.unwrap().unwrap();
    assert_eq!(got, acme[0]);
    assert_eq!(got.requirements, "numpy==2.1.0\n");
    assert!(jobs.function(Uuid::now_v7()).await.unwrap().is_none());

    // Newest first, pages and totals.
    let page1 = jobs.functions(Some("acme"), Page::new(2, 0)).await.unwrap();
    assert_eq!(page1.total, 5);
    let names: Vec<_> = page1.items.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["f4", "f3"]);
    let page3 = jobs.functions(Some("acme"), Page::new(2, 4)).await.unwrap();
    assert_eq!(page3.items.len(), 1);
    assert_eq!(page3.items[0].name, "f0");
    assert_eq!(
        jobs.functions(None, Page::default()).await.unwrap().total,
        6
    );

    // Soft delete: gone from listings, still readable, once.
    assert!(jobs.delete_function(acme[1].id).await.unwrap());
    assert!(!jobs.delete_function(acme[1].id).await.unwrap());
    assert!(!jobs.delete_function(Uuid::now_v7()).await.unwrap());
    let deleted = jobs.function(acme[1].id).await.unwrap().unwrap();
    assert!(deleted.deleted_at.is_some());
    let listed = jobs.functions(Some("acme"), Page::default()).await.unwrap();
    assert_eq!(listed.total, 4);
    assert!(listed.items.iter().all(|f| f.id != acme[1].id));

    jobs.set_function_image(other.id, "registry.test/g@sha256:aa", "sha256:aa")
        .await
        .unwrap();
    let other = jobs.function(other.id).await.unwrap().unwrap();
    assert_eq!(other.image.as_deref(), Some("registry.test/g@sha256:aa"));
    assert_eq!(other.image_digest.as_deref(), Some("sha256:aa"));
    let missing = jobs.set_function_image(Uuid::now_v7(), "x", "y").await;
    assert!(matches!(
        missing,
        Err(Error::NotFound {
            kind: "function",
            ..
        })
    ));

    // As the API returns it.
    let v = serde_json::to_value(&other).unwrap();
    assert_eq!(v["owner"], "other");
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(v["deleted_at"].is_null());
}

on!(builds_listed, [sqlite, postgres]);
async fn builds_listed(env: Env) {
    let jobs = &env.jobs;
    let f = jobs.create_function(function("acme", "f")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        let mut new = NewBuild::new(
            if i % 2 == 0 {
                BuildKind::Function
            } else {
                BuildKind::Release
            },
            json!({"n": i}),
        );
        new.function_id = (i % 2 == 0).then_some(f.id);
        new.created_by = Some(if i < 3 { "alice" } else { "bob" }.into());
        ids.push(jobs.create_build(new).await.unwrap().id);
    }
    // The latest function build is the function's build.
    assert_eq!(
        jobs.function(f.id).await.unwrap().unwrap().build_id,
        Some(ids[4])
    );

    jobs.update_build(
        ids[1],
        BuildUpdate {
            status: Some(BuildStatus::Building),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    jobs.finish_build(
        ids[2],
        BuildResult::Failed {
            error: "no".into(),
            step: None,
        },
    )
    .await
    .unwrap();

    let b = jobs.build(ids[0]).await.unwrap().unwrap();
    assert_eq!(b.status, BuildStatus::Pending);
    assert_eq!(b.spec, json!({"n": 0}));
    assert_eq!(b.kind, BuildKind::Function);
    assert_eq!(b.function_id, Some(f.id));
    assert!(jobs.build(Uuid::now_v7()).await.unwrap().is_none());

    let all = jobs
        .builds(BuildFilter::default(), Page::new(4, 0))
        .await
        .unwrap();
    assert_eq!(all.total, 6);
    assert_eq!(
        all.items.iter().map(|b| b.id).collect::<Vec<_>>(),
        [ids[5], ids[4], ids[3], ids[2]]
    );
    let rest = jobs
        .builds(BuildFilter::default(), Page::new(4, 4))
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|b| b.id).collect::<Vec<_>>(),
        [ids[1], ids[0]]
    );

    let check = |filter: BuildFilter, want: Vec<Uuid>| {
        let jobs = jobs.clone();
        async move {
            let got = jobs.builds(filter.clone(), Page::default()).await.unwrap();
            assert_eq!(got.total, want.len() as u64, "{filter:?}");
            let got: Vec<_> = got.items.iter().map(|b| b.id).collect();
            assert_eq!(got, want, "{filter:?}");
        }
    };
    check(
        BuildFilter {
            status: Some(BuildStatus::Pending),
            ..Default::default()
        },
        vec![ids[5], ids[4], ids[3], ids[0]],
    )
    .await;
    check(
        BuildFilter {
            status: Some(BuildStatus::Building),
            ..Default::default()
        },
        vec![ids[1]],
    )
    .await;
    check(
        BuildFilter {
            function_id: Some(f.id),
            ..Default::default()
        },
        vec![ids[4], ids[2], ids[0]],
    )
    .await;
    check(
        BuildFilter {
            created_by: Some("bob".into()),
            ..Default::default()
        },
        vec![ids[5], ids[4], ids[3]],
    )
    .await;
    check(
        BuildFilter {
            status: Some(BuildStatus::Pending),
            function_id: Some(f.id),
            created_by: Some("alice".into()),
        },
        vec![ids[0]],
    )
    .await;
    check(
        BuildFilter {
            status: Some(BuildStatus::Cancelled),
            ..Default::default()
        },
        vec![],
    )
    .await;

    // The seed's JSON: lowercase statuses, RFC 3339 times.
    let v = serde_json::to_value(jobs.build(ids[1]).await.unwrap().unwrap()).unwrap();
    assert_eq!(v["status"], "building");
    assert_eq!(v["kind"], "release");
    assert!(v["started_at"].as_str().unwrap().contains('T'), "{v}");

    // A given id, twice.
    let id = Uuid::now_v7();
    let mut new = NewBuild::new(BuildKind::Release, json!({}));
    new.id = Some(id);
    jobs.create_build(new.clone()).await.unwrap();
    assert!(matches!(
        jobs.create_build(new).await,
        Err(Error::Exists { kind: "build", .. })
    ));
    // A function that is not there.
    let mut new = NewBuild::new(BuildKind::Function, json!({}));
    new.function_id = Some(Uuid::now_v7());
    assert!(matches!(
        jobs.create_build(new).await,
        Err(Error::NotFound {
            kind: "function",
            ..
        })
    ));
}

on!(build_progress_and_log, [sqlite, postgres]);
async fn build_progress_and_log(env: Env) {
    let jobs = &env.jobs;
    let id = jobs
        .create_build(NewBuild::new(BuildKind::Release, json!({})))
        .await
        .unwrap()
        .id;
    let update = |status, progress, step: &str| BuildUpdate {
        status,
        progress: Some(progress),
        current_step: Some(step.to_owned()),
    };
    jobs.update_build(
        id,
        update(Some(BuildStatus::DownloadingArtifacts), 10, "fetching"),
    )
    .await
    .unwrap();
    jobs.log_build(id, "first line\n").await.unwrap();
    jobs.update_build(id, update(None, 45, "Step 5/12 : RUN pip install"))
        .await
        .unwrap();
    let long = "é".repeat(jobs::MAX_LINE_BYTES);
    jobs.log_build(id, &long).await.unwrap();

    let b = jobs.build(id).await.unwrap().unwrap();
    assert_eq!(
        b.status,
        BuildStatus::DownloadingArtifacts,
        "status kept when not given"
    );
    assert_eq!(b.progress, 45);
    assert_eq!(
        b.current_step.as_deref(),
        Some("Step 5/12 : RUN pip install")
    );
    assert!(b.started_at.is_some());

    let log = jobs.build_log(id).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].line, "first line");
    assert_eq!((log[0].seq, log[1].seq), (2, 4));
    assert!(
        log[1].line.len() <= jobs::MAX_LINE_BYTES && log[1].line.len() > jobs::MAX_LINE_BYTES - 2
    );
    assert!(log[1].line.chars().all(|c| c == 'é'));

    for bad in [
        BuildUpdate {
            status: Some(BuildStatus::Completed),
            ..Default::default()
        },
        BuildUpdate {
            status: Some(BuildStatus::Pending),
            ..Default::default()
        },
        BuildUpdate {
            progress: Some(101),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            jobs.update_build(id, bad).await,
            Err(Error::InvalidUpdate { .. })
        ));
    }
    let missing = Uuid::now_v7();
    assert!(matches!(
        jobs.update_build(missing, BuildUpdate::default()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        jobs.log_build(missing, "x").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        jobs.build_log(missing).await,
        Err(Error::NotFound { .. })
    ));

    assert!(
        jobs.finish_build(
            id,
            BuildResult::Failed {
                error: "boom".into(),
                step: None
            }
        )
        .await
        .unwrap()
    );
    let b = jobs.build(id).await.unwrap().unwrap();
    assert_eq!(b.status, BuildStatus::Failed);
    assert_eq!(b.error_message.as_deref(), Some("boom"));
    assert_eq!(
        b.error_step.as_deref(),
        Some("Step 5/12 : RUN pip install"),
        "the step it was in"
    );
    assert!(b.completed_at.is_some());
    // Final: no more updates or lines.
    assert!(matches!(
        jobs.update_build(id, BuildUpdate::default()).await,
        Err(Error::Finished {
            status: "failed",
            ..
        })
    ));
    assert!(matches!(
        jobs.log_build(id, "late").await,
        Err(Error::Finished { .. })
    ));
}

on!(build_log_is_bounded, [sqlite, postgres]);
async fn build_log_is_bounded(env: Env) {
    let jobs = &env.jobs;
    let id = jobs
        .create_build(NewBuild::new(BuildKind::Release, json!({})))
        .await
        .unwrap()
        .id;
    let lines = jobs::MAX_LOG_LINES + 5;
    for i in 0..lines {
        jobs.log_build(id, &format!("line {i}")).await.unwrap();
    }
    let log = jobs.build_log(id).await.unwrap();
    assert_eq!(log.len() as u64, jobs::MAX_LOG_LINES);
    assert_eq!(log[0].line, "line 5", "the oldest lines go");
    assert_eq!(log.last().unwrap().line, format!("line {}", lines - 1));
    assert_eq!(log.last().unwrap().seq, lines);
}

on!(finish_build_once, [sqlite, postgres]);
async fn finish_build_once(env: Env) {
    let jobs = &env.jobs;
    let f = jobs.create_function(function("acme", "f")).await.unwrap();
    let mut new = NewBuild::new(BuildKind::Function, json!({}));
    new.function_id = Some(f.id);
    let id = jobs.create_build(new).await.unwrap().id;
    jobs.update_build(
        id,
        BuildUpdate {
            status: Some(BuildStatus::Pushing),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let results: Vec<BuildResult> = (0..8)
        .map(|i| match i % 3 {
            0 => BuildResult::Completed {
                image_url: format!("registry.test/f:v{i}"),
                image_digest: format!("sha256:{i:064}"),
                size_bytes: 1000 + i,
            },
            1 => BuildResult::Failed {
                error: format!("e{i}"),
                step: Some("push".into()),
            },
            _ => BuildResult::Cancelled,
        })
        .collect();
    let outcomes = join_all(results.iter().cloned().map(|r| {
        let jobs = jobs.clone();
        tokio::spawn(async move { jobs.finish_build(id, r).await.unwrap() })
    }))
    .await;
    let wins: Vec<usize> = outcomes
        .into_iter()
        .enumerate()
        .filter_map(|(i, won)| won.unwrap().then_some(i))
        .collect();
    assert_eq!(wins.len(), 1, "exactly one final result, got {wins:?}");
    let winner = &results[wins[0]];
    let b = jobs.build(id).await.unwrap().unwrap();
    let events = jobs.subscribe(id).await.unwrap().backlog;
    assert_eq!(events.iter().filter(|e| e.is_final()).count(), 1);
    match winner {
        BuildResult::Completed {
            image_url,
            image_digest,
            size_bytes,
        } => {
            assert_eq!(b.status, BuildStatus::Completed);
            assert_eq!(b.progress, 100);
            assert_eq!(b.image_url.as_ref(), Some(image_url));
            assert_eq!(b.size_bytes, Some(*size_bytes));
            let f = jobs.function(f.id).await.unwrap().unwrap();
            assert_eq!(f.image, Some(format!("{image_url}@{image_digest}")));
            assert_eq!(f.image_digest.as_ref(), Some(image_digest));
        }
        BuildResult::Failed { error, .. } => {
            assert_eq!(b.status, BuildStatus::Failed);
            assert_eq!(b.error_message.as_ref(), Some(error));
        }
        BuildResult::Cancelled => assert_eq!(b.status, BuildStatus::Cancelled),
    }
    assert!(!jobs.finish_build(id, BuildResult::Cancelled).await.unwrap());
    assert!(matches!(
        jobs.finish_build(Uuid::now_v7(), BuildResult::Cancelled)
            .await,
        Err(Error::NotFound { .. })
    ));
}

on!(cancel, [sqlite, postgres, postgres_redis]);
async fn cancel(env: Env) {
    let jobs = &env.jobs;
    let new = || NewBuild::new(BuildKind::Release, json!({}));

    // Pending: cancelled at once, never handed to a worker.
    let pending = jobs.create_build(new()).await.unwrap().id;
    assert_eq!(
        jobs.cancel_build(pending).await.unwrap(),
        Some(BuildStatus::Cancelled)
    );
    let b = jobs.build(pending).await.unwrap().unwrap();
    assert_eq!(b.status, BuildStatus::Cancelled);
    assert!(b.completed_at.is_some());
    assert!(
        jobs.take("w", Duration::ZERO).await.unwrap().is_none(),
        "a cancelled build never starts"
    );
    assert_eq!(jobs.queue_depth().await.unwrap(), 0);

    // Running: flagged, an event, the status stays until the worker stops.
    let running = jobs.create_build(new()).await.unwrap().id;
    let lease = jobs
        .take("w", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.work, jobs::Work::Build(running));
    jobs.update_build(
        running,
        BuildUpdate {
            status: Some(BuildStatus::Building),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        jobs.cancel_build(running).await.unwrap(),
        Some(BuildStatus::Building)
    );
    assert_eq!(
        jobs.cancel_build(running).await.unwrap(),
        Some(BuildStatus::Building),
        "asking twice"
    );
    let b = jobs.build(running).await.unwrap().unwrap();
    assert!(b.cancel_requested);
    assert_eq!(b.status, BuildStatus::Building);
    let events = jobs.subscribe(running).await.unwrap().backlog;
    let requests = events
        .iter()
        .filter(|e| matches!(e, jobs::BuildEvent::CancelRequested { .. }))
        .count();
    assert_eq!(requests, 1);
    assert!(
        jobs.finish_build(running, BuildResult::Cancelled)
            .await
            .unwrap()
    );
    jobs.ack(lease).await.unwrap();
    assert_eq!(
        jobs.build(running).await.unwrap().unwrap().status,
        BuildStatus::Cancelled
    );

    // Final: unchanged.
    let done = jobs.create_build(new()).await.unwrap().id;
    let result = BuildResult::Completed {
        image_url: "r/x:1".into(),
        image_digest: "sha256:1".into(),
        size_bytes: 1,
    };
    jobs.finish_build(done, result).await.unwrap();
    assert_eq!(
        jobs.cancel_build(done).await.unwrap(),
        Some(BuildStatus::Completed)
    );
    assert!(!jobs.build(done).await.unwrap().unwrap().cancel_requested);

    assert_eq!(jobs.cancel_build(Uuid::now_v7()).await.unwrap(), None);
}

on!(tasks, [sqlite, postgres]);
async fn tasks(env: Env) {
    let jobs = &env.jobs;
    let f = Uuid::now_v7();
    let id = Uuid::now_v7();
    let mut new = task_for(f);
    new.id = Some(id);
    new.inputs_key = format!("inputs/{id}.json");
    let t = jobs.create_task(new.clone()).await.unwrap();
    assert_eq!(t.status, TaskStatus::Pending);
    assert_eq!(jobs.task(id).await.unwrap().unwrap(), t);
    assert!(matches!(
        jobs.create_task(new).await,
        Err(Error::Exists { kind: "task", .. })
    ));
    assert!(jobs.task(Uuid::now_v7()).await.unwrap().is_none());

    let started = jobs.start_task(id, "w1").await.unwrap().unwrap();
    assert_eq!(started.status, TaskStatus::Running);
    assert_eq!(started.attempts, 1);
    assert_eq!(started.worker.as_deref(), Some("w1"));
    // A second start (a redelivery before any result) counts again.
    assert_eq!(
        jobs.start_task(id, "w2").await.unwrap().unwrap().attempts,
        2
    );

    // Concurrent results: exactly one is stored.
    let results: Vec<TaskResult> = (0..8u64)
        .map(|i| {
            if i % 2 == 0 {
                TaskResult::Completed {
                    output_key: format!("out/{i}"),
                    duration_ms: i,
                }
            } else {
                TaskResult::Failed {
                    error: json!({"type": "ValueError", "message": format!("m{i}")}),
                    output_key: None,
                    duration_ms: Some(i),
                }
            }
        })
        .collect();
    let outcomes = join_all(results.iter().cloned().map(|r| {
        let jobs = jobs.clone();
        tokio::spawn(async move { jobs.finish_task(id, r).await.unwrap() })
    }))
    .await;
    let wins: Vec<usize> = outcomes
        .into_iter()
        .enumerate()
        .filter_map(|(i, won)| won.unwrap().then_some(i))
        .collect();
    assert_eq!(wins.len(), 1, "exactly one final result, got {wins:?}");
    let t = jobs.task(id).await.unwrap().unwrap();
    match &results[wins[0]] {
        TaskResult::Completed {
            output_key,
            duration_ms,
        } => {
            assert_eq!(t.status, TaskStatus::Completed);
            assert_eq!(t.output_key.as_ref(), Some(output_key));
            assert_eq!(t.duration_ms, Some(*duration_ms));
            assert!(t.error.is_none());
        }
        TaskResult::Failed { error, .. } => {
            assert_eq!(t.status, TaskStatus::Failed);
            assert_eq!(t.error.as_ref(), Some(error));
        }
    }
    assert!(t.completed_at.is_some());
    // With a result it is not started again.
    assert!(jobs.start_task(id, "w3").await.unwrap().is_none());
    assert_eq!(jobs.task(id).await.unwrap().unwrap().attempts, 2);
    assert!(matches!(
        jobs.start_task(Uuid::now_v7(), "w").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        jobs.finish_task(
            Uuid::now_v7(),
            TaskResult::Completed {
                output_key: "o".into(),
                duration_ms: 1
            }
        )
        .await,
        Err(Error::NotFound { .. })
    ));

    let v = serde_json::to_value(&t).unwrap();
    assert!(
        matches!(v["status"].as_str(), Some("completed" | "failed")),
        "{v}"
    );
}

on!(wait_task, [sqlite, postgres, postgres_redis]);
async fn wait_task(env: Env) {
    let jobs = &env.jobs;
    let other = env.second().await;
    let id = jobs.create_task(task_for(Uuid::now_v7())).await.unwrap().id;

    // Times out while nobody finishes it.
    let started = std::time::Instant::now();
    assert!(
        jobs.wait_task(id, Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Woken by a result stored elsewhere (another instance: NOTIFY, Redis
    // pub/sub, or on SQLite the periodic look).
    let finisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        other
            .finish_task(
                id,
                TaskResult::Completed {
                    output_key: "out".into(),
                    duration_ms: 5,
                },
            )
            .await
            .unwrap()
    });
    let started = std::time::Instant::now();
    let done = jobs
        .wait_task(id, Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    let waited = started.elapsed();
    let bound = if env.backend == crate::harness::Backend::Sqlite {
        3000
    } else {
        1500
    };
    assert!(
        waited < Duration::from_millis(bound),
        "woke after {waited:?}"
    );
    assert!(finisher.await.unwrap());
    // Already final: at once.
    assert!(jobs.wait_task(id, Duration::ZERO).await.unwrap().is_some());
    assert!(matches!(
        jobs.wait_task(Uuid::now_v7(), Duration::ZERO).await,
        Err(Error::NotFound { .. })
    ));
}

on!(keys, [sqlite, postgres]);
async fn keys(env: Env) {
    let jobs = &env.jobs;
    let (a, secret_a) = jobs.create_key("ci", "acme").await.unwrap();
    let (b, secret_b) = jobs.create_key("app", "other").await.unwrap();
    assert_ne!(secret_a, secret_b);
    assert!(secret_a.starts_with(&a.prefix));
    assert!(secret_a.len() > 64, "{} characters", secret_a.len());

    let found = jobs.authenticate(&secret_a).await.unwrap().unwrap();
    assert_eq!(
        (found.id, found.name.as_str(), found.owner.as_str()),
        (a.id, "ci", "acme")
    );
    assert!(found.last_used_at.is_some());
    assert_eq!(
        jobs.authenticate(&secret_b).await.unwrap().unwrap().id,
        b.id
    );

    // Wrong secrets: same lookup id with another tail, garbage, empty.
    let forged = format!("{}_{}", a.prefix, "0".repeat(64));
    for wrong in [
        forged.as_str(),
        "hoist_",
        "",
        "nope",
        &secret_a[..secret_a.len() - 1],
    ] {
        assert!(
            jobs.authenticate(wrong).await.unwrap().is_none(),
            "{wrong:?}"
        );
    }

    let listed = jobs.keys().await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id).collect::<Vec<_>>(),
        [a.id, b.id]
    );
    // No secret material in what is listed or printed.
    let shown = format!("{listed:?}{}", serde_json::to_string(&listed).unwrap());
    assert!(!shown.contains(&secret_a[a.prefix.len() + 1..]));

    assert!(jobs.revoke_key(a.id).await.unwrap());
    assert!(!jobs.revoke_key(a.id).await.unwrap());
    assert!(!jobs.revoke_key(Uuid::now_v7()).await.unwrap());
    assert!(jobs.authenticate(&secret_a).await.unwrap().is_none());
    let listed = jobs.keys().await.unwrap();
    assert!(listed[0].revoked_at.is_some());
    assert!(listed[1].revoked_at.is_none());
}

on!(usage, [sqlite, postgres]);
async fn usage(env: Env) {
    let jobs = &env.jobs;
    let before = SystemTime::now() - Duration::from_secs(1);
    for (image, n) in [("a", 3), ("b", 5), ("c", 1), ("d", 3)] {
        for i in 0..n {
            let kind = if i % 2 == 0 {
                UsageKind::Pull
            } else {
                UsageKind::Run
            };
            jobs.record_usage(image, &format!("w{i}"), kind)
                .await
                .unwrap();
        }
    }
    let top = jobs.most_used_images(before, 3).await.unwrap();
    assert_eq!(
        top,
        [
            ("b".to_owned(), 5),
            ("a".to_owned(), 3),
            ("d".to_owned(), 3)
        ]
    );
    let later = SystemTime::now() + Duration::from_secs(1);
    assert!(jobs.most_used_images(later, 10).await.unwrap().is_empty());
}

on!(health, [sqlite, postgres, sqlite_redis]);
async fn health(env: Env) {
    let mut env = env;
    let h = env.jobs.health().await;
    assert!(h.is_ok(), "{h:?}");
    if let Some(redis) = env.redis.as_mut() {
        redis.stop();
        let h = env.jobs.health().await;
        assert!(h.database.is_ok());
        assert!(h.queue.is_err(), "{h:?}");
    }
}

on!(retention_records, [sqlite, postgres]);
async fn retention_records(env: Env) {
    let jobs = &env.jobs;
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    jobs.record_usage_at("r/a:v1", "w", UsageKind::Pull, now - 10 * day)
        .await
        .unwrap();
    jobs.record_usage_at("r/a:v1", "w", UsageKind::Run, now - 3 * day)
        .await
        .unwrap();
    jobs.record_usage_at("r/b:v1", "w", UsageKind::Run, now - 40 * day)
        .await
        .unwrap();
    let mut last = jobs.last_used_images().await.unwrap();
    last.sort();
    assert_eq!(last.len(), 2);
    let age = |i: usize| (chrono::Utc::now() - last[i].1).num_days();
    assert_eq!((last[0].0.as_str(), age(0)), ("r/a:v1", 3));
    assert_eq!((last[1].0.as_str(), age(1)), ("r/b:v1", 40));
    // Old uses stay out of the week's top.
    let week = jobs.most_used_images(now - 7 * day, 10).await.unwrap();
    assert_eq!(week, vec![("r/a:v1".to_owned(), 1)]);

    // A function is live while one of its versions is.
    let a1 = jobs.create_function(function("u", "a")).await.unwrap();
    let a2 = jobs.create_function(function("u", "a")).await.unwrap();
    let b = jobs.create_function(function("u", "b")).await.unwrap();
    jobs.delete_function(a1.id).await.unwrap();
    jobs.delete_function(b.id).await.unwrap();
    let names = jobs.function_names().await.unwrap();
    assert_eq!(
        names,
        vec![
            ("u".to_owned(), "a".to_owned(), true),
            ("u".to_owned(), "b".to_owned(), false),
        ]
    );
    jobs.delete_function(a2.id).await.unwrap();
    assert!(!jobs.function_names().await.unwrap()[0].2);

    // One claim per job and day, whoever asks.
    let other = env.second().await;
    assert!(
        jobs.claim_scheduled_run("gc", "2026-11-30", "w1")
            .await
            .unwrap()
    );
    assert!(
        !other
            .claim_scheduled_run("gc", "2026-11-30", "w2")
            .await
            .unwrap()
    );
    assert!(
        !jobs
            .claim_scheduled_run("gc", "2026-11-30", "w1")
            .await
            .unwrap()
    );
    assert!(
        other
            .claim_scheduled_run("mirror", "2026-11-30", "w2")
            .await
            .unwrap()
    );
    assert!(
        other
            .claim_scheduled_run("gc", "2026-12-01", "w2")
            .await
            .unwrap()
    );
}
