-- The janitor: fleet-wide leases (one daemon works on a piece at a time) and files retired by compaction
-- or retention, whose objects are deleted once `retired_at` is older than the grace period (queries that
-- listed them before may still be reading them). Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS retired (
    file_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    retired_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS retired_at ON retired (retired_at);
CREATE INDEX IF NOT EXISTS files_state_table ON files (state, table_name, tenant);
