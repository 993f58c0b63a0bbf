-- cxpulse schema v3: conversation facts (one row per conversation, latest state) and the
-- alerts table that drop detectors write to.

CREATE TABLE IF NOT EXISTS {db}.conversation_facts {on_cluster}
(
    conversation_id String,
    source_partition UInt16 COMMENT 'partition of the events topic the conversation lives on',
    version UInt64 COMMENT 'source offset of the last event applied: the newest row wins',
    team LowCardinality(String) COMMENT 'current values; unknown/normal when never given',
    channel LowCardinality(String),
    region LowCardinality(String),
    priority LowCardinality(String),
    segment LowCardinality(String),
    customer_id String COMMENT 'empty when never given',
    customer_value Nullable(Float64) COMMENT 'latest customer_value seen, account currency',
    status LowCardinality(String) COMMENT 'open or resolved (a reopen makes it open again)',
    opened_at Nullable(DateTime64(6, 'UTC')) COMMENT 'first conversation.opened (NULL if never seen)',
    waiting_since Nullable(DateTime64(6, 'UTC')) COMMENT 'start of the open wait, NULL if none',
    awaiting_first_response UInt8 COMMENT '1 while the current cycle has no first response',
    human_agent_messages UInt32,
    reopens UInt32,
    events UInt32 COMMENT 'accepted events so far',
    last_event_at DateTime64(6, 'UTC') COMMENT 'greatest occurred_at accepted',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree(version)
PARTITION BY toYYYYMM(last_event_at)
ORDER BY (conversation_id)
TTL toDateTime(last_event_at) + INTERVAL {minute_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.alerts {on_cluster}
(
    alert_id String COMMENT 'stable id: one KPI drop, one scope, one start',
    kpi LowCardinality(String) COMMENT 'the KPI column of kpi_minute_kpis that dropped',
    grouping LowCardinality(String),
    team LowCardinality(String),
    channel LowCardinality(String),
    region LowCardinality(String),
    priority LowCardinality(String),
    segment LowCardinality(String),
    state LowCardinality(String) COMMENT 'firing or resolved',
    started_at DateTime('UTC') COMMENT 'first minute of the drop (event time)',
    ended_at Nullable(DateTime('UTC')) COMMENT 'NULL while firing',
    baseline Float64 COMMENT 'expected value before the drop',
    observed Float64 COMMENT 'value that triggered the alert',
    severity LowCardinality(String),
    summary String,
    version UInt64 COMMENT 'newest row per alert_id wins'
)
ENGINE = {engine_prefix}ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY (alert_id)
TTL started_at + INTERVAL {minute_ttl_days} DAY;

-- Dead letters per minute and reason, for boards and alerting on bad producers.
CREATE OR REPLACE VIEW {db}.dead_letter_counts {on_cluster} AS
SELECT
    toStartOfMinute(source_time) AS minute,
    reason,
    source_topic,
    count() AS dead_letters
FROM {db}.dead_letters FINAL
GROUP BY minute, reason, source_topic;
