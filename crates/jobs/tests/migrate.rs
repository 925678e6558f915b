//! A database made by the first schema, with data in it, migrated to the
//! latest by `Jobs::open`.

use std::path::Path;
use std::time::Duration;

use jobs::{BuildStatus, Jobs, JobsConfig, TaskResult, TaskStatus, Work};
use sqlx::migrate::Migrator;
use uuid::Uuid;

use crate::harness::Backend;

async fn first_schema_then_latest(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, dialect) = match backend {
        Backend::Postgres => (
            testkit::Postgres::shared()
                .await
                .unwrap()
                .create_database()
                .await
                .unwrap(),
            "postgres",
        ),
        _ => (
            format!("sqlite://{}", dir.path().join("old.db").display()),
            "sqlite",
        ),
    };

    // The first release's schema, and what it stored.
    let first = dir.path().join("first");
    std::fs::create_dir(&first).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    std::fs::copy(src.join("0001_initial.sql"), first.join("0001_initial.sql")).unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!(
        "{url}{}",
        if dialect == "sqlite" { "?mode=rwc" } else { "" }
    ))
    .await
    .unwrap();
    Migrator::new(first.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let (function, build, task, key) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let statements = [
        format!(
            "INSERT INTO functions (id, owner, name, version, code_hash, requirements, created_at) \
             VALUES ('{function}', 'acme', 'f', '1', 'sha256:c', '', 1700000000000000)"
        ),
        format!(
            "INSERT INTO builds (id, kind, function_id, status, progress, spec, created_at, event_seq) \
             VALUES ('{build}', 'function', '{function}', 'building', 40, '{{\"a\":1}}', 1700000000000001, 1)"
        ),
        format!(
            "INSERT INTO build_events (build_id, seq, kind, at, body) VALUES ('{build}', 1, 'progress', \
             1700000000000002, '{{\"type\":\"progress\",\"seq\":1,\"timestamp\":\"2023-11-14T22:13:20Z\",\
             \"status\":\"building\",\"progress\":40,\"message\":null}}')"
        ),
        format!(
            "INSERT INTO tasks (id, function_id, image, inputs_key, status, created_at) \
             VALUES ('{task}', '{function}', 'img@sha256:0', 'in/1', 'pending', 1700000000000003)"
        ),
        format!(
            "INSERT INTO queue (work, work_id, attempts, visible_at, created_at) \
             VALUES ('task', '{task}', 0, 0, 1700000000000003)"
        ),
        format!(
            "INSERT INTO api_keys (id, name, owner, lookup, hash, created_at) \
             VALUES ('{key}', 'old', 'acme', '0011223344556677', '00', 1700000000000004)"
        ),
    ];
    for sql in &statements {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    // The latest code opens it: migrated, the old data readable and
    // working with what the new schema added.
    let jobs = Jobs::open(JobsConfig::new(&url, "database")).await.unwrap();
    let b = jobs.build(build).await.unwrap().unwrap();
    assert_eq!(
        (b.status, b.progress, b.cancel_requested),
        (BuildStatus::Building, 40, false)
    );
    assert_eq!(b.spec, serde_json::json!({"a": 1}));
    assert_eq!(b.vulnerabilities, None);
    let summary = serde_json::json!({"critical": 1, "high": 0,
        "warnings": ["PyYAML 5.3.1 has CRITICAL CVE-2020-14343"]});
    jobs.set_build_vulnerabilities(build, &summary)
        .await
        .unwrap();
    assert_eq!(
        jobs.build(build).await.unwrap().unwrap().vulnerabilities,
        Some(summary)
    );
    assert!(matches!(
        jobs.set_build_vulnerabilities(Uuid::now_v7(), &serde_json::json!({}))
            .await,
        Err(jobs::Error::NotFound { .. })
    ));
    assert_eq!(
        jobs.cancel_build(build).await.unwrap(),
        Some(BuildStatus::Building)
    );
    assert!(jobs.build(build).await.unwrap().unwrap().cancel_requested);
    let events = jobs.subscribe(build).await.unwrap().backlog;
    assert_eq!(events.len(), 2, "old event kept, new one numbered after it");
    assert_eq!(events[1].seq(), 2);

    let lease = jobs
        .take("w", Duration::ZERO)
        .await
        .unwrap()
        .expect("the old queue entry");
    assert_eq!(lease.work, Work::Task(task));
    jobs.start_task(task, "w").await.unwrap().unwrap();
    let done = TaskResult::Completed {
        output_key: "out".into(),
        duration_ms: 1,
    };
    assert!(jobs.finish_task(task, done).await.unwrap());
    jobs.ack(lease).await.unwrap();
    assert_eq!(
        jobs.task(task).await.unwrap().unwrap().status,
        TaskStatus::Completed
    );

    let keys = jobs.keys().await.unwrap();
    assert_eq!((keys[0].id, keys[0].last_used_at), (key, None));
    jobs.record_usage("img@sha256:0", "w", jobs::UsageKind::Run)
        .await
        .unwrap();
    let since = std::time::SystemTime::now() - Duration::from_secs(60);
    assert_eq!(
        jobs.most_used_images(since, 5).await.unwrap(),
        [("img@sha256:0".to_owned(), 1)]
    );
    assert_eq!(
        jobs.function(function).await.unwrap().unwrap().owner,
        "acme"
    );

    // Opening again applies nothing and keeps everything.
    drop(jobs);
    let again = Jobs::open(JobsConfig::new(&url, "database")).await.unwrap();
    assert_eq!(
        again.task(task).await.unwrap().unwrap().status,
        TaskStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_first_schema_sqlite() {
    first_schema_then_latest(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_first_schema_postgres() {
    first_schema_then_latest(Backend::Postgres).await;
}
