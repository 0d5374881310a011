-- Full-text indexes beside Parquet files (one Tantivy bundle per file and kind). A row is written once the
-- index object is verified in the file's store; a stable file without one is searched by scanning.
-- created_at is Unix milliseconds.
CREATE TABLE IF NOT EXISTS indexes (
    file_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    byte_size BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (file_id, kind)
);
