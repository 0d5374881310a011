-- Where a node serves its APIs, and how often it beats: a node is `stale` once three beats are missed.
ALTER TABLE nodes ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN heartbeat_every_ms BIGINT NOT NULL DEFAULT 10000;
