-- Cancellation of running builds, when an API key was last used, and the
-- image usage records that mirroring and retention read.

ALTER TABLE builds ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;

CREATE TABLE image_usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image TEXT NOT NULL,
    worker TEXT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX image_usage_at ON image_usage (at, image);
CREATE INDEX tasks_status ON tasks (status);
