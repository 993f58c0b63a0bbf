-- cxpulse schema v1: minute partials, dead letters, late events.
-- Placeholders: {db}, {minute_ttl_days}, {side_ttl_days}, {on_cluster}, {engine_prefix}.

CREATE TABLE IF NOT EXISTS {db}.kpi_minute_partials {on_cluster}
(
    grouping LowCardinality(String) COMMENT 'overall, team, channel, region, priority, segment, team_channel',
    team LowCardinality(String) COMMENT 'empty when not part of the grouping',
    channel LowCardinality(String),
    region LowCardinality(String),
    priority LowCardinality(String),
    segment LowCardinality(String),
    minute DateTime('UTC') COMMENT 'UTC minute of the events that completed the samples',
    source_partition UInt16 COMMENT 'partition of the events topic the row was computed from',
    version UInt64 COMMENT 'highest conversation-log offset folded into the row',
    opened UInt64,
    resolutions UInt64,
    reopens UInt64,
    one_touch_resolutions UInt64,
    frt_count UInt64,
    frt_sum_us UInt64,
    frt_breaches UInt64,
    frt_sketch Map(Int16, UInt64),
    reply_count UInt64,
    reply_sum_us UInt64,
    reply_sketch Map(Int16, UInt64),
    resolution_count UInt64,
    resolution_sum_us UInt64,
    resolution_sketch Map(Int16, UInt64),
    csat_responses UInt64,
    csat_sum UInt64,
    csat_satisfied UInt64,
    nps_responses UInt64,
    nps_promoters UInt64,
    nps_detractors UInt64,
    ces_responses UInt64,
    ces_sum UInt64,
    ces_easy UInt64,
    messages_customer UInt64,
    messages_agent_human UInt64,
    messages_agent_bot UInt64,
    events UInt64,
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(minute)
ORDER BY (grouping, team, channel, region, priority, segment, minute, source_partition)
TTL minute + INTERVAL {minute_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.dead_letters {on_cluster}
(
    source_topic LowCardinality(String),
    source_partition UInt16,
    source_offset UInt64,
    source_time DateTime64(3, 'UTC') COMMENT 'Kafka timestamp of the rejected message',
    reason LowCardinality(String),
    kafka_key String,
    payload String COMMENT 'the original bytes, unchanged',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree
PARTITION BY toYYYYMMDD(source_time)
ORDER BY (source_topic, source_partition, source_offset)
TTL toDateTime(source_time) + INTERVAL {side_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.late_events {on_cluster}
(
    source_topic LowCardinality(String),
    source_partition UInt16,
    source_offset UInt64,
    source_time DateTime64(3, 'UTC'),
    conversation_id String,
    lateness_seconds Float64 COMMENT 'how far behind the partition watermark the event was',
    payload String,
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree
PARTITION BY toYYYYMMDD(source_time)
ORDER BY (source_topic, source_partition, source_offset)
TTL toDateTime(source_time) + INTERVAL {side_ttl_days} DAY;

-- Partials of all source partitions merged: one row per grouping, dimensions and minute.
CREATE OR REPLACE VIEW {db}.kpi_minute {on_cluster} AS
SELECT
    grouping, team, channel, region, priority, segment, minute,
    sum(opened) AS opened,
    sum(resolutions) AS resolutions,
    sum(reopens) AS reopens,
    sum(one_touch_resolutions) AS one_touch_resolutions,
    sum(frt_count) AS frt_count,
    sum(frt_sum_us) AS frt_sum_us,
    sum(frt_breaches) AS frt_breaches,
    sumMap(frt_sketch) AS frt_sketch,
    sum(reply_count) AS reply_count,
    sum(reply_sum_us) AS reply_sum_us,
    sumMap(reply_sketch) AS reply_sketch,
    sum(resolution_count) AS resolution_count,
    sum(resolution_sum_us) AS resolution_sum_us,
    sumMap(resolution_sketch) AS resolution_sketch,
    sum(csat_responses) AS csat_responses,
    sum(csat_sum) AS csat_sum,
    sum(csat_satisfied) AS csat_satisfied,
    sum(nps_responses) AS nps_responses,
    sum(nps_promoters) AS nps_promoters,
    sum(nps_detractors) AS nps_detractors,
    sum(ces_responses) AS ces_responses,
    sum(ces_sum) AS ces_sum,
    sum(ces_easy) AS ces_easy,
    sum(messages_customer) AS messages_customer,
    sum(messages_agent_human) AS messages_agent_human,
    sum(messages_agent_bot) AS messages_agent_bot,
    sum(events) AS events
FROM {db}.kpi_minute_partials FINAL
GROUP BY grouping, team, channel, region, priority, segment, minute;
