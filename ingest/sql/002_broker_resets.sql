-- Migration 2: notice when the broker loses its data (a memory-only broker restarted, a topic
-- recreated): the id each topic had, and how many partitions started again from zero.
ALTER TABLE ingest_stats ADD COLUMN broker_resets BIGINT DEFAULT 0;
UPDATE ingest_stats SET broker_resets = 0;

CREATE TABLE kafka_topics (
    topic VARCHAR PRIMARY KEY,
    topic_id VARCHAR NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);
