//! 1,000 tasks drained by two concurrent takers: none lost, none run
//! twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use jobs::{Jobs, NewTask, TaskResult, TaskStatus, Work};
use uuid::Uuid;

use crate::harness::{Backend, Env};
use crate::on;

const TASKS: usize = 1000;

/// Takes, runs and acknowledges until the queue stays empty; the tasks it
/// ran.
async fn worker(jobs: Jobs, name: &'static str) -> Vec<Uuid> {
    let mut ran = Vec::new();
    while let Some(lease) = jobs.take(name, Duration::from_millis(500)).await.unwrap() {
        let Work::Task(id) = lease.work else {
            panic!("only tasks are queued")
        };
        if let Some(task) = jobs.start_task(id, name).await.unwrap() {
            ran.push(task.id);
            let result = TaskResult::Completed {
                output_key: format!("out/{id}"),
                duration_ms: 1,
            };
            assert!(
                jobs.finish_task(id, result).await.unwrap(),
                "{name} ran {id} after someone else"
            );
        }
        jobs.ack(lease).await.unwrap();
    }
    ran
}

on!(
    thousand_tasks_two_takers,
    [sqlite, postgres, postgres_redis]
);
#[allow(
    clippy::print_stderr,
    reason = "the drain time is worth seeing with --nocapture"
)]
async fn thousand_tasks_two_takers(env: Env) {
    let function_id = Uuid::now_v7();
    let mut ids = HashSet::new();
    for i in 0..TASKS {
        let task = env
            .jobs
            .create_task(NewTask {
                id: None,
                function_id,
                image: "registry.test/fn@sha256:00".into(),
                inputs_key: format!("inputs/{i}.json"),
                created_by: None,
            })
            .await
            .unwrap();
        ids.insert(task.id);
    }
    assert_eq!(env.jobs.queue_depth().await.unwrap(), TASKS as u64);

    let other = match env.backend {
        Backend::Sqlite => env.jobs.clone(),
        _ => env.second().await,
    };
    let started = Instant::now();
    let a = tokio::spawn(worker(env.jobs.clone(), "taker-a"));
    let b = tokio::spawn(worker(other, "taker-b"));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let took = started.elapsed();

    let mut seen = HashSet::new();
    for id in a.iter().chain(&b) {
        assert!(seen.insert(*id), "{id} ran twice");
    }
    assert_eq!(seen, ids, "every task ran");
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both takers worked: {} / {}",
        a.len(),
        b.len()
    );
    assert_eq!(env.jobs.queue_depth().await.unwrap(), 0);
    for id in ids.iter().take(50) {
        let t = env.jobs.task(*id).await.unwrap().unwrap();
        assert_eq!((t.status, t.attempts), (TaskStatus::Completed, 1));
    }
    eprintln!(
        "{:?}: {TASKS} tasks in {took:?} by two takers ({} / {})",
        env.backend,
        a.len(),
        b.len()
    );
}
