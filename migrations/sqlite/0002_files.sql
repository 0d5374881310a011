-- Parquet files written by the `parquet` exporter. A row is added (state 'uploading') before the upload
-- starts and becomes 'stable' once the object is verified in the store; only stable files are served.
-- Times: min_time/max_time are the rows' UTC nanoseconds; created_at/uploaded_at are Unix milliseconds.
CREATE TABLE IF NOT EXISTS files (
    file_id TEXT PRIMARY KEY,
    exporter TEXT NOT NULL,
    node_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    signal TEXT NOT NULL,
    table_name TEXT NOT NULL,
    root TEXT NOT NULL,
    path TEXT NOT NULL,
    min_time BIGINT NOT NULL,
    max_time BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    byte_size BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    uploaded_at BIGINT
);
CREATE INDEX IF NOT EXISTS files_tenant_table_time ON files (tenant, table_name, min_time, max_time);
CREATE INDEX IF NOT EXISTS files_node_exporter_state ON files (node_id, exporter, state);

-- Which items of which WAL batches each file holds: what makes a replay store nothing twice.
CREATE TABLE IF NOT EXISTS file_batches (
    file_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    item_start BIGINT NOT NULL,
    item_count BIGINT NOT NULL,
    PRIMARY KEY (file_id, batch_id, item_start)
);
CREATE INDEX IF NOT EXISTS file_batches_batch ON file_batches (batch_id);
