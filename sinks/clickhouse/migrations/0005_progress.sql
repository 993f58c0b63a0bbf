-- cxpulse schema v5: event-time progress per source partition, and per-minute verdict
-- counts that survive restarts. Placeholders: {db}, {on_cluster}, {engine_prefix},
-- {side_ttl_days}.

-- One row per source partition (the newest wins): how far event time has progressed.
-- Every sample of a row with minute + lag_minutes < toStartOfMinute(progress) is stored.
CREATE TABLE IF NOT EXISTS {db}.source_progress {on_cluster}
(
    source_partition UInt16,
    watermark DateTime64(6, 'UTC') COMMENT 'highest occurred_at accepted in the partition',
    progress DateTime64(6, 'UTC')
        COMMENT 'event-time progress: the watermark, or the wall clock minus the idle grace while the partition is caught up and quiet',
    idle UInt8 COMMENT '1 when progress comes from the idle rule',
    source_offset Int64 COMMENT 'last source offset the partition has processed',
    version UInt64 COMMENT 'progress in microseconds (never decreases): the newest row wins',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree(version)
ORDER BY (source_partition);

-- How the compute role judged every input message, per arrival minute and partition.
-- Exact across restarts like the KPIs (rows are full state, versioned by source offset).
CREATE TABLE IF NOT EXISTS {db}.event_verdicts {on_cluster}
(
    minute DateTime('UTC') COMMENT 'UTC minute of the message Kafka timestamp (arrival)',
    source_partition UInt16,
    accepted UInt64,
    duplicate UInt64,
    late UInt64,
    invalid UInt64,
    replayed UInt64,
    version UInt64 COMMENT 'highest source offset counted in the row',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree(version)
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, source_partition)
TTL minute + INTERVAL {side_ttl_days} DAY;
