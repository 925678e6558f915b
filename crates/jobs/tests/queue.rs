//! The queue on every backend: order, leases, acknowledgement, release,
//! re-delivery of finished work, attempt limits, depth; and on Redis,
//! reclaiming a dead consumer's entries and recovering work Redis lost.

use std::time::{Duration, Instant};

use jobs::{Error, NewTask, TaskResult, TaskStatus, Work};
use uuid::Uuid;

use crate::harness::Env;
use crate::on;

fn new_task() -> NewTask {
    NewTask {
        id: None,
        function_id: Uuid::now_v7(),
        image: "registry.test/fn@sha256:00".into(),
        inputs_key: "inputs/x.json".into(),
        created_by: None,
    }
}

async fn queue_tasks(env: &Env, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(env.jobs.create_task(new_task()).await.unwrap().id);
    }
    ids
}

const NOW: Duration = Duration::ZERO;

/// What a worker does when a task ran: store its result, then
/// acknowledge. (Acknowledging work without a result is not a way to drop
/// it: on Redis the recovery queues unfinished work again.)
async fn finish(jobs: &jobs::Jobs, lease: jobs::Lease) {
    let result = TaskResult::Completed {
        output_key: "out".into(),
        duration_ms: 1,
    };
    jobs.finish_task(lease.work.id(), result).await.unwrap();
    jobs.ack(lease).await.unwrap();
}

on!(fifo_ack_depth, [sqlite, postgres, postgres_redis]);
async fn fifo_ack_depth(env: Env) {
    let jobs = &env.jobs;
    assert_eq!(jobs.queue_depth().await.unwrap(), 0);
    assert!(jobs.take("w", NOW).await.unwrap().is_none());
    let ids = queue_tasks(&env, 3).await;
    assert_eq!(jobs.queue_depth().await.unwrap(), 3);

    let mut leases = Vec::new();
    for id in &ids {
        let lease = jobs.take("w", NOW).await.unwrap().expect("queued work");
        assert_eq!(lease.work, Work::Task(*id), "oldest first");
        assert_eq!(lease.attempt, 1);
        assert_eq!(lease.worker, "w");
        leases.push(lease);
    }
    assert!(
        jobs.take("w", NOW).await.unwrap().is_none(),
        "all are leased"
    );
    assert_eq!(
        jobs.queue_depth().await.unwrap(),
        3,
        "leased work still counts"
    );
    for lease in leases {
        finish(jobs, lease).await;
    }
    assert_eq!(jobs.queue_depth().await.unwrap(), 0);

    // Waiting: empty-handed after the wait, or woken by new work.
    let started = Instant::now();
    assert!(
        jobs.take("w", Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let producer = {
        let other = env.second().await;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            other.create_task(new_task()).await.unwrap().id
        })
    };
    let started = Instant::now();
    let lease = jobs
        .take("w", Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(lease.work, Work::Task(producer.await.unwrap()));
    assert!(
        waited < Duration::from_millis(1500),
        "woke after {waited:?}"
    );
}

on!(lease_expiry(300, 5), [sqlite, postgres, postgres_redis]);
async fn lease_expiry(env: Env) {
    let a = &env.jobs;
    let b = env.second().await;
    let id = queue_tasks(&env, 1).await[0];
    let first = a.take("worker-a", NOW).await.unwrap().unwrap();
    assert!(
        b.take("worker-b", NOW).await.unwrap().is_none(),
        "held by a"
    );

    // worker-a stalls past its lease: worker-b gets the work.
    let second = b
        .take("worker-b", Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.work, Work::Task(id));
    assert_eq!(second.attempt, 2);
    assert!(matches!(
        a.renew(&first).await,
        Err(Error::LeaseLost { .. })
    ));
    // a's late ack does not take the work from b.
    a.ack(first).await.unwrap();
    assert_eq!(b.queue_depth().await.unwrap(), 1);
    b.renew(&second).await.unwrap();
    finish(&b, second).await;
    assert_eq!(a.queue_depth().await.unwrap(), 0);
    assert!(
        a.take("worker-a", Duration::from_millis(700))
            .await
            .unwrap()
            .is_none()
    );
}

on!(
    renew_keeps_lease(300, 5),
    [sqlite, postgres, postgres_redis]
);
async fn renew_keeps_lease(env: Env) {
    let jobs = &env.jobs;
    queue_tasks(&env, 1).await;
    let lease = jobs.take("a", NOW).await.unwrap().unwrap();
    let until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        jobs.renew(&lease).await.unwrap();
        assert!(
            jobs.take("b", NOW).await.unwrap().is_none(),
            "renewed leases hold"
        );
    }
    finish(jobs, lease).await;
    assert_eq!(jobs.queue_depth().await.unwrap(), 0);
}

on!(release, [sqlite, postgres, postgres_redis]);
async fn release(env: Env) {
    let jobs = &env.jobs;
    let ids = queue_tasks(&env, 2).await;
    let lease = jobs.take("a", NOW).await.unwrap().unwrap();
    assert_eq!(lease.work, Work::Task(ids[0]));
    jobs.release(lease).await.unwrap();
    assert_eq!(jobs.queue_depth().await.unwrap(), 2);
    // Given back at once and not counted as an attempt.
    let mut got = Vec::new();
    for _ in 0..2 {
        let lease = jobs.take("b", NOW).await.unwrap().unwrap();
        assert_eq!(lease.attempt, 1);
        got.push(lease.work);
        finish(jobs, lease).await;
    }
    got.sort_by_key(|w| w.id());
    assert_eq!(got, [Work::Task(ids[0]), Work::Task(ids[1])]);
}

on!(
    finished_work_not_run_again(300, 5),
    [sqlite, postgres, postgres_redis]
);
async fn finished_work_not_run_again(env: Env) {
    let jobs = &env.jobs;
    let id = queue_tasks(&env, 1).await[0];
    // A worker runs it, stores the result, and dies before acknowledging.
    let lease = jobs.take("dies", NOW).await.unwrap().unwrap();
    jobs.start_task(id, "dies").await.unwrap().unwrap();
    let result = TaskResult::Completed {
        output_key: "out".into(),
        duration_ms: 3,
    };
    assert!(jobs.finish_task(id, result).await.unwrap());
    drop(lease);
    // After the lease, the re-delivery finds the result and drops it.
    let other = env.second().await;
    assert!(
        other
            .take("next", Duration::from_millis(1500))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(other.queue_depth().await.unwrap(), 0);
    assert!(other.start_task(id, "next").await.unwrap().is_none());
    let t = other.task(id).await.unwrap().unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Completed, 1));
}

on!(attempts_run_out(200, 2), [sqlite, postgres, postgres_redis]);
async fn attempts_run_out(env: Env) {
    let jobs = &env.jobs;
    let id = queue_tasks(&env, 1).await[0];
    for attempt in 1..=2 {
        let lease = jobs
            .take("crashy", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lease.attempt, attempt);
        jobs.start_task(id, "crashy").await.unwrap().unwrap();
        // Dies without a result.
        drop(lease);
    }
    // The third delivery is past the limit: the task fails instead.
    assert!(
        jobs.take("crashy", Duration::from_millis(800))
            .await
            .unwrap()
            .is_none()
    );
    let t = jobs.task(id).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!(t.error.as_ref().unwrap()["type"], "AttemptsExhausted");
    assert_eq!(jobs.queue_depth().await.unwrap(), 0);
}

on!(
    dead_consumer_reclaimed(300, 5),
    [sqlite_redis, postgres_redis]
);
/// A worker on another machine dies holding two entries: `XAUTOCLAIM`
/// gives them to the next worker once they idled a lease, oldest first,
/// with their delivery counts.
async fn dead_consumer_reclaimed(env: Env) {
    let ids = queue_tasks(&env, 3).await;
    {
        let machine = env.second().await;
        let _a = machine.take("dead-worker", NOW).await.unwrap().unwrap();
        let _b = machine.take("dead-worker", NOW).await.unwrap().unwrap();
        // The machine goes away with both leases.
    }
    let jobs = &env.jobs;
    let fresh = jobs.take("live-worker", NOW).await.unwrap().unwrap();
    assert_eq!((fresh.work, fresh.attempt), (Work::Task(ids[2]), 1));
    tokio::time::sleep(Duration::from_millis(350)).await;
    let mut reclaimed = Vec::new();
    for _ in 0..2 {
        let lease = jobs.take("live-worker", NOW).await.unwrap().unwrap();
        assert_eq!(lease.attempt, 2);
        reclaimed.push(lease.work);
        finish(jobs, lease).await;
    }
    assert_eq!(reclaimed, [Work::Task(ids[0]), Work::Task(ids[1])]);
    finish(jobs, fresh).await;
    assert_eq!(jobs.queue_depth().await.unwrap(), 0);
}

on!(redis_recovery, [sqlite_redis, postgres_redis]);
/// Work recorded but never queued (the process died between the commit
/// and `XADD`), and work Redis forgot (a restart without persistence),
/// is queued again by the recovery, once.
async fn redis_recovery(env: Env) {
    let jobs = &env.jobs;
    let queued = queue_tasks(&env, 2).await;
    // A record as a crash after the commit leaves it: no queue entry.
    let orphan = Uuid::now_v7();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&env.database).await.unwrap();
    sqlx::query(
        "INSERT INTO tasks (id, function_id, image, inputs_key, status, created_at) \
         VALUES ($1, $2, 'img', 'in', 'pending', 0)",
    )
    .bind(orphan.to_string())
    .bind(Uuid::now_v7().to_string())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    // The background recovery (at open, then once per lease) may have
    // queued it already, even before this look: between the two, once.
    let depth = jobs.queue_depth().await.unwrap();
    assert!(depth == 2 || depth == 3, "{depth}");
    // A background recovery holding the lock makes this one a no-op (0);
    // if that one listed the records before the insert it misses the
    // orphan, so recovering again once the lock is free must queue it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while jobs.queue_depth().await.unwrap() < 3 {
        assert!(jobs.recover().await.unwrap() <= 1);
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan is never queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(jobs.queue_depth().await.unwrap(), 3);
    assert_eq!(
        jobs.recover().await.unwrap(),
        0,
        "queueing again is a no-op"
    );
    assert_eq!(jobs.queue_depth().await.unwrap(), 3);

    // Redis forgets everything.
    let redis = env.redis.as_ref().unwrap();
    assert_eq!(redis.command("FLUSHALL").unwrap(), "+OK");
    assert_eq!(jobs.queue_depth().await.unwrap(), 0);
    assert!(jobs.recover().await.unwrap() <= 3);
    assert_eq!(jobs.queue_depth().await.unwrap(), 3);
    let mut got = Vec::new();
    while let Some(lease) = jobs.take("w", NOW).await.unwrap() {
        got.push(lease.work.id());
        finish(jobs, lease).await;
    }
    got.sort();
    let mut want = vec![queued[0], queued[1], orphan];
    want.sort();
    assert_eq!(got, want);
}
