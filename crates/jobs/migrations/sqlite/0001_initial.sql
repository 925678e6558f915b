-- The first schema: functions, builds and their events, tasks, the
-- embedded queue and API keys. Times are microseconds since the Unix
-- epoch, ids are UUIDs as text, JSON is text: one set of queries serves
-- SQLite and PostgreSQL (the PostgreSQL file differs only in types).

CREATE TABLE functions (
    id TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    requirements TEXT NOT NULL,
    base TEXT,
    image TEXT,
    image_digest TEXT,
    build_id TEXT,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX functions_owner_created ON functions (owner, created_at);
CREATE INDEX functions_created ON functions (created_at);

CREATE TABLE builds (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    function_id TEXT REFERENCES functions (id),
    status TEXT NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    current_step TEXT,
    image_url TEXT,
    image_digest TEXT,
    size_bytes BIGINT,
    error_message TEXT,
    error_step TEXT,
    spec TEXT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    -- The last event number given out, and how many log lines are kept.
    event_seq BIGINT NOT NULL DEFAULT 0,
    log_lines BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX builds_status_created ON builds (status, created_at);
CREATE INDEX builds_function_created ON builds (function_id, created_at);
CREATE INDEX builds_created ON builds (created_at);

-- Every event of a build in order: progress, log lines, cancellation
-- requests and the final one. `body` is the event as JSON.
CREATE TABLE build_events (
    build_id TEXT NOT NULL REFERENCES builds (id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
);
CREATE INDEX build_events_kind ON build_events (build_id, kind, seq);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    function_id TEXT NOT NULL,
    image TEXT NOT NULL,
    inputs_key TEXT NOT NULL,
    status TEXT NOT NULL,
    output_key TEXT,
    error TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    worker TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    duration_ms BIGINT,
    created_by TEXT
);
CREATE INDEX tasks_function_created ON tasks (function_id, created_at);

-- The embedded queue: an entry is visible from `visible_at` on; taking it
-- hides it until the lease runs out.
CREATE TABLE queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    work TEXT NOT NULL,
    work_id TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    visible_at BIGINT NOT NULL,
    worker TEXT,
    token TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX queue_visible ON queue (visible_at, id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    lookup TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
