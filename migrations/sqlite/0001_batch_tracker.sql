-- Batch tracker: one row per WAL batch, through every pipeline stage. Times are Unix milliseconds (UTC).
CREATE TABLE IF NOT EXISTS batch_tracker (
    batch_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    signal TEXT NOT NULL,
    receiver TEXT NOT NULL,
    node_id TEXT NOT NULL,
    item_count BIGINT NOT NULL,
    byte_size BIGINT NOT NULL,
    topics TEXT,
    first_offset BIGINT,
    last_offset BIGINT,
    created_at BIGINT NOT NULL,
    kafka_pip BOOLEAN NOT NULL DEFAULT FALSE,
    kafka_pip_completed_at BIGINT,
    wal_pip BOOLEAN NOT NULL DEFAULT FALSE,
    wal_pip_completed_at BIGINT,
    ingestion_pip BOOLEAN NOT NULL DEFAULT FALSE,
    ingestion_pip_completed_at BIGINT,
    storage_pip BOOLEAN NOT NULL DEFAULT FALSE,
    storage_pip_completed_at BIGINT,
    index_pip BOOLEAN NOT NULL DEFAULT FALSE,
    index_pip_completed_at BIGINT,
    janitor_pip BOOLEAN NOT NULL DEFAULT FALSE,
    janitor_pip_completed_at BIGINT,
    status TEXT NOT NULL DEFAULT 'pending',
    error_stage TEXT,
    error_message TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_tracker_status_created ON batch_tracker (status, created_at);
CREATE INDEX IF NOT EXISTS batch_tracker_client_created ON batch_tracker (client_id, created_at);

-- Daemons sharing this catalog.
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
