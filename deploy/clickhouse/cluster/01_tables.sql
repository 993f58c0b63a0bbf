-- cxpulse on a ClickHouse cluster (several shards, each replicated): the tables.
-- The tables of sinks/clickhouse/migrations/0001_init.sql and 0003_conversations.sql, two
-- per table:
--   <name>_local  ReplicatedReplacingMergeTree on every node, holding that shard's rows;
--   <name>        Distributed over the <name>_local tables of all shards.
-- Readers and the sink keep using the plain names (kpi_minute_partials, dead_letters,
-- late_events, conversation_facts, alerts), so every query, view and the sink work unchanged.
--
-- Database `cxpulse`, TTLs 400 days (minutes) and 30 days (dead letters, late events): the
-- defaults of CXPULSE_CLICKHOUSE__DATABASE / __MINUTE_TTL_DAYS / __SIDE_TTL_DAYS; edit them
-- here if yours differ. '{cluster}', '{shard}' and '{replica}' are the server's macros
-- (<macros> in its configuration). Apply with
--   clickhouse-client --multiquery < 01_tables.sql && clickhouse-client --multiquery < 02_views.sql
-- Safe to run again (IF NOT EXISTS; the ledger rows it adds again are read with DISTINCT).
-- See README.md in this folder.

CREATE DATABASE IF NOT EXISTS cxpulse ON CLUSTER '{cluster}';

-- ---------------------------------------------------------------------------------------
-- Minute partials
-- ---------------------------------------------------------------------------------------

-- One shard's rows. Columns, order key, partitioning and TTL exactly as 0001_init.sql.
CREATE TABLE IF NOT EXISTS cxpulse.kpi_minute_partials_local ON CLUSTER '{cluster}'
(
    grouping LowCardinality(String) COMMENT 'overall, team, channel, region, priority, segment, team_channel',
    team LowCardinality(String) COMMENT 'empty when not part of the grouping',
    channel LowCardinality(String),
    region LowCardinality(String),
    priority LowCardinality(String),
    segment LowCardinality(String),
    minute DateTime('UTC') COMMENT 'UTC minute of the events that completed the samples',
    lag_minutes UInt16 COMMENT 'partition watermark minute at processing minus minute (0 = in order)',
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
ENGINE = ReplicatedReplacingMergeTree(
    '/clickhouse/tables/{shard}/cxpulse/kpi_minute_partials_local', '{replica}', version)
PARTITION BY toYYYYMMDD(minute)
PRIMARY KEY (grouping, team, channel, region, priority, segment, minute, source_partition)
ORDER BY (grouping, team, channel, region, priority, segment, minute, source_partition, lag_minutes)
TTL minute + INTERVAL 400 DAY;

-- All shards. The sharding key is a function of the row key without the minute: every version
-- of a row lands on the same shard, so FINAL (run on each shard by the Distributed engine)
-- still keeps only the newest version, and a series of one source partition stays on one
-- shard. The source partition is part of it so that no shard holds all the `overall` rows.
CREATE TABLE IF NOT EXISTS cxpulse.kpi_minute_partials ON CLUSTER '{cluster}'
AS cxpulse.kpi_minute_partials_local
ENGINE = Distributed('{cluster}', cxpulse, kpi_minute_partials_local,
                     cityHash64(grouping, team, channel, region, priority, segment, source_partition));

-- ---------------------------------------------------------------------------------------
-- Dead letters and late events (keyed by their source position)
-- ---------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS cxpulse.dead_letters_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cxpulse/dead_letters_local', '{replica}')
PARTITION BY toYYYYMMDD(source_time)
ORDER BY (source_topic, source_partition, source_offset)
TTL toDateTime(source_time) + INTERVAL 30 DAY;

-- A re-sent record has the same source position, hence the same shard, and replaces itself.
CREATE TABLE IF NOT EXISTS cxpulse.dead_letters ON CLUSTER '{cluster}'
AS cxpulse.dead_letters_local
ENGINE = Distributed('{cluster}', cxpulse, dead_letters_local,
                     cityHash64(source_topic, source_partition, source_offset));

CREATE TABLE IF NOT EXISTS cxpulse.late_events_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cxpulse/late_events_local', '{replica}')
PARTITION BY toYYYYMMDD(source_time)
ORDER BY (source_topic, source_partition, source_offset)
TTL toDateTime(source_time) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS cxpulse.late_events ON CLUSTER '{cluster}'
AS cxpulse.late_events_local
ENGINE = Distributed('{cluster}', cxpulse, late_events_local,
                     cityHash64(source_topic, source_partition, source_offset));

-- ---------------------------------------------------------------------------------------
-- Conversation facts and alerts (migration 0003), keyed by conversation and alert id
-- ---------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS cxpulse.conversation_facts_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedReplacingMergeTree(
    '/clickhouse/tables/{shard}/cxpulse/conversation_facts_local', '{replica}', version)
PARTITION BY toYYYYMM(last_event_at)
ORDER BY (conversation_id)
TTL toDateTime(last_event_at) + INTERVAL 400 DAY;

-- Every version of a conversation on the same shard (FINAL stays exact).
CREATE TABLE IF NOT EXISTS cxpulse.conversation_facts ON CLUSTER '{cluster}'
AS cxpulse.conversation_facts_local
ENGINE = Distributed('{cluster}', cxpulse, conversation_facts_local, cityHash64(conversation_id));

CREATE TABLE IF NOT EXISTS cxpulse.alerts_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedReplacingMergeTree(
    '/clickhouse/tables/{shard}/cxpulse/alerts_local', '{replica}', version)
PARTITION BY toYYYYMM(started_at)
ORDER BY (alert_id)
TTL started_at + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS cxpulse.alerts ON CLUSTER '{cluster}'
AS cxpulse.alerts_local
ENGINE = Distributed('{cluster}', cxpulse, alerts_local, cityHash64(alert_id));

-- ---------------------------------------------------------------------------------------
-- Event-time progress and verdict counts (0005_progress.sql)
-- ---------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS cxpulse.source_progress_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedReplacingMergeTree(
    '/clickhouse/tables/{shard}/cxpulse/source_progress_local', '{replica}', version)
ORDER BY (source_partition);

CREATE TABLE IF NOT EXISTS cxpulse.source_progress ON CLUSTER '{cluster}'
AS cxpulse.source_progress_local
ENGINE = Distributed('{cluster}', cxpulse, source_progress_local, source_partition);

CREATE TABLE IF NOT EXISTS cxpulse.event_verdicts_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedReplacingMergeTree(
    '/clickhouse/tables/{shard}/cxpulse/event_verdicts_local', '{replica}', version)
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, source_partition)
TTL minute + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS cxpulse.event_verdicts ON CLUSTER '{cluster}'
AS cxpulse.event_verdicts_local
ENGINE = Distributed('{cluster}', cxpulse, event_verdicts_local, source_partition);

-- ---------------------------------------------------------------------------------------
-- Migration ledger
-- ---------------------------------------------------------------------------------------

-- The table `cxpulse db migrate` keeps, replicated to every node of every shard (one
-- ZooKeeper path for the whole cluster, replica name '{shard}_{replica}'), holding the
-- migration versions this folder is equivalent to, so that `cxpulse db migrate --cluster`
-- sees them as applied whichever node it connects to. Inserting a version again is harmless
-- (the ledger is read with DISTINCT).
CREATE TABLE IF NOT EXISTS cxpulse.schema_migrations ON CLUSTER '{cluster}'
(
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/cxpulse/schema_migrations', '{shard}_{replica}')
ORDER BY version;

INSERT INTO cxpulse.schema_migrations (version, name)
VALUES (1, 'init'), (2, 'views'), (3, 'conversations'), (4, 'lag_minutes'), (5, 'progress');
