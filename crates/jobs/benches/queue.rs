//! Queue throughput, tasks per second: queueing (`create_task`: record +
//! queue entry) and draining by concurrent workers (take, start, finish,
//! ack: a whole worker cycle without running anything), on the embedded
//! queue of SQLite and PostgreSQL and on Redis Streams (records in
//! PostgreSQL). Servers are testkit's throwaway ones on loopback.
//!
//! `cargo bench -p jobs --bench queue` (`HOIST_BENCH_TASKS`, default
//! 2000; `HOIST_BENCH_WORKERS`, default 2).

#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

use std::time::{Duration, Instant};

use jobs::{Jobs, JobsConfig, NewTask, TaskResult, Work};
use uuid::Uuid;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn worker(jobs: Jobs, name: String) -> usize {
    let mut done = 0;
    while let Some(lease) = jobs.take(&name, Duration::from_millis(200)).await.unwrap() {
        if let Work::Task(id) = lease.work
            && jobs.start_task(id, &name).await.unwrap().is_some()
        {
            let result = TaskResult::Completed {
                output_key: "out".into(),
                duration_ms: 0,
            };
            jobs.finish_task(id, result).await.unwrap();
            done += 1;
        }
        jobs.ack(lease).await.unwrap();
    }
    done
}

/// Queues `tasks`, drains them with `workers` instances; the two rates.
async fn measure(database: &str, queue: &str, tasks: usize, workers: usize) -> (f64, f64) {
    let open = || Jobs::open(JobsConfig::new(database, queue));
    let api = open().await.unwrap();
    let function_id = Uuid::now_v7();
    let started = Instant::now();
    for i in 0..tasks {
        let new = NewTask {
            id: None,
            function_id,
            image: "registry.test/fn@sha256:00".into(),
            inputs_key: format!("inputs/{i}.json"),
            created_by: None,
        };
        api.create_task(new).await.unwrap();
    }
    let queued = tasks as f64 / started.elapsed().as_secs_f64();

    let mut instances = Vec::new();
    for _ in 0..workers {
        instances.push(open().await.unwrap());
    }
    let started = Instant::now();
    let handles: Vec<_> = instances
        .into_iter()
        .enumerate()
        .map(|(i, jobs)| tokio::spawn(worker(jobs, format!("bench-{i}"))))
        .collect();
    let mut done = 0;
    for h in handles {
        done += h.await.unwrap();
    }
    // The last take of each worker waits 200 ms for more before it stops.
    let drained = done as f64 / (started.elapsed().as_secs_f64() - 0.2).max(0.001);
    assert_eq!(done, tasks, "every task ran once");
    (queued, drained)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tasks = env_number("HOIST_BENCH_TASKS", 2000);
    let workers = env_number("HOIST_BENCH_WORKERS", 2);
    let dir = tempfile::tempdir().unwrap();
    let pg = testkit::Postgres::start().await.unwrap();
    let redis = testkit::Redis::start().await.unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let cases = [
        ("sqlite, embedded queue", sqlite, "database".to_owned()),
        (
            "postgres, embedded queue",
            pg.create_database().await.unwrap(),
            "database".to_owned(),
        ),
        (
            "postgres + redis streams",
            pg.create_database().await.unwrap(),
            redis.url(),
        ),
    ];
    println!("{tasks} tasks, {workers} workers, 2 cores");
    println!("{:<28} {:>12} {:>12}", "backend", "queued/s", "drained/s");
    for (name, database, queue) in &cases {
        let (queued, drained) = measure(database, queue, tasks, workers).await;
        println!("{name:<28} {queued:>12.0} {drained:>12.0}");
    }
}
