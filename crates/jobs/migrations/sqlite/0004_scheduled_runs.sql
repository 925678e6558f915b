-- Scheduled registry operations (mirror, gc): one row per job and day,
-- inserted by the worker that runs it, so that no two workers run the
-- same day's job and a restarted worker does not run it again.

CREATE TABLE scheduled_runs (
    job TEXT NOT NULL,
    slot TEXT NOT NULL,
    worker TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (job, slot)
);
