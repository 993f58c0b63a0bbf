-- cxpulse schema v7: customers. Placeholders: {db}, {on_cluster}, {engine_prefix},
-- {minute_ttl_days}. Documented column by column in docs/clickhouse.md ("Customers").
--
-- Written by the sink from the customer log (the customer role's changelog) and the
-- feedback-followups topic:
--   customer_health         the latest state of each customer (read with FINAL)
--   customer_risk_changes   the risk history: one row per transition, in event time
--   feedback_followups      every low survey answer, once
-- Views:
--   at_risk_customers                                     who, why, since when
--   revenue_at_risk                                       now: overall, per segment/team/reason
--   revenue_at_risk_trend(step_minutes, from_time, to_time)   the same at every step

CREATE TABLE IF NOT EXISTS {db}.customer_health {on_cluster}
(
    customer_id String,
    log_partition UInt16 COMMENT 'partition of the customer log holding the customer',
    version UInt64 COMMENT 'customer-log offset of this state: the newest row wins',
    as_of DateTime64(6, 'UTC') COMMENT 'the customer partition watermark the state is evaluated at',
    segment LowCardinality(String) COMMENT 'latest segment carried by an event of the customer',
    customer_value Nullable(Float64) COMMENT 'latest customer_value by arrival, NULL if none',
    at_risk UInt8,
    reasons Array(LowCardinality(String)),
    reason_teams Array(String) COMMENT 'team at the latest event contributing to each reason',
    reason_since Array(DateTime64(6, 'UTC')),
    reason_evidence Array(UInt32) COMMENT 'the score, or the count in the window',
    teams Array(String) COMMENT 'distinct teams that raised a reason, sorted',
    at_risk_since Nullable(DateTime64(6, 'UTC')),
    conversations_opened UInt32,
    reopens UInt32,
    frt_breaches UInt32,
    urgent_frt_breaches UInt32,
    repeat_contacts UInt32,
    open_conversations UInt32,
    latest_csat Nullable(UInt8),
    latest_csat_at Nullable(DateTime64(6, 'UTC')),
    latest_nps Nullable(UInt8),
    latest_nps_at Nullable(DateTime64(6, 'UTC')),
    latest_ces Nullable(UInt8),
    latest_ces_at Nullable(DateTime64(6, 'UTC')),
    last_event_at Nullable(DateTime64(6, 'UTC')),
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree(version)
ORDER BY (customer_id)
TTL toDateTime(as_of) + INTERVAL {minute_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.customer_risk_changes {on_cluster}
(
    customer_id String,
    at DateTime64(6, 'UTC') COMMENT 'event time from which this status holds',
    at_risk UInt8,
    reasons Array(LowCardinality(String)),
    teams Array(String) COMMENT 'distinct teams that raised a reason, sorted',
    customer_value Nullable(Float64),
    segment LowCardinality(String) COMMENT 'empty when not at risk',
    version UInt64 COMMENT 'customer-log offset that wrote the row: the newest wins',
    deleted UInt8 COMMENT '1: withdrawn by a later evaluation (FINAL hides it)',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree(version, deleted)
PARTITION BY toYYYYMM(at)
ORDER BY (customer_id, at);

CREATE TABLE IF NOT EXISTS {db}.feedback_followups {on_cluster}
(
    conversation_id String,
    event_id String,
    survey LowCardinality(String) COMMENT 'csat, nps or ces',
    score UInt8,
    customer_id String COMMENT 'empty when the conversation has no customer',
    customer_value Nullable(Float64),
    segment LowCardinality(String),
    team LowCardinality(String),
    channel LowCardinality(String),
    priority LowCardinality(String),
    region LowCardinality(String),
    answered_at DateTime64(6, 'UTC'),
    extra String COMMENT 'the fields of the event outside the contract, a JSON object',
    source_partition UInt16,
    source_offset UInt64,
    source_time DateTime64(3, 'UTC'),
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree
PARTITION BY toYYYYMM(answered_at)
ORDER BY (conversation_id, event_id)
TTL toDateTime(answered_at) + INTERVAL {minute_ttl_days} DAY;

-- One row per at-risk customer and reason.
CREATE OR REPLACE VIEW {db}.at_risk_customers {on_cluster} AS
SELECT
    customer_id,
    reason,
    since,
    team,
    evidence,
    customer_value,
    segment,
    at_risk_since,
    reasons,
    teams,
    as_of
FROM {db}.customer_health FINAL
ARRAY JOIN
    reasons AS reason,
    reason_since AS since,
    reason_teams AS team,
    reason_evidence AS evidence
WHERE at_risk = 1;

-- Revenue at risk now: a customer counts once overall, once in its segment, once in each
-- team that raised one of its reasons, once per reason (teams and reasons may sum to more
-- than overall). A customer without a known value counts with 0.
CREATE OR REPLACE VIEW {db}.revenue_at_risk {on_cluster} AS
WITH _at_risk AS (
    SELECT customer_id, segment, reasons, teams, customer_value
    FROM {db}.customer_health FINAL
    WHERE at_risk = 1
)
SELECT
    CAST(u_grouping, 'LowCardinality(String)') AS grouping,
    CAST(u_team, 'LowCardinality(String)') AS team,
    CAST(u_segment, 'LowCardinality(String)') AS segment,
    CAST(u_reason, 'LowCardinality(String)') AS reason,
    customers,
    revenue,
    customers_without_value
FROM
(
    SELECT
        'overall' AS u_grouping,
        '' AS u_team,
        '' AS u_segment,
        '' AS u_reason,
        count() AS customers,
        toFloat64(sum(toDecimal128(ifNull(customer_value, 0), 6))) AS revenue,
        countIf(customer_value IS NULL) AS customers_without_value
    FROM _at_risk
    UNION ALL
    SELECT 'segment', '', segment, '', count(),
           toFloat64(sum(toDecimal128(ifNull(customer_value, 0), 6))),
           countIf(customer_value IS NULL)
    FROM _at_risk
    GROUP BY segment
    UNION ALL
    SELECT 'team', team_, '', '', count(),
           toFloat64(sum(toDecimal128(ifNull(customer_value, 0), 6))),
           countIf(customer_value IS NULL)
    FROM _at_risk
    ARRAY JOIN teams AS team_
    GROUP BY team_
    UNION ALL
    SELECT 'reason', '', '', reason_, count(),
           toFloat64(sum(toDecimal128(ifNull(customer_value, 0), 6))),
           countIf(customer_value IS NULL)
    FROM _at_risk
    ARRAY JOIN reasons AS reason_
    GROUP BY reason_
)
ORDER BY grouping, team, segment, reason;

-- Revenue at risk over time, rebuilt from the risk history: at every multiple of
-- step_minutes (since the Unix epoch) from from_time to to_time, the customers at risk and
-- their value, per grouping as in revenue_at_risk. Each transition row adds its status and
-- removes the previous one of its customer; a point sums every change up to it.
CREATE OR REPLACE VIEW {db}.revenue_at_risk_trend {on_cluster} AS
WITH
    toInt64({step_minutes:UInt32}) * 60000000 AS _step,
    toInt64(toUnixTimestamp({from_time:DateTime('UTC')})) * 1000000 AS _from_us,
    toInt64(toUnixTimestamp({to_time:DateTime('UTC')})) * 1000000 AS _to_us,
    if(_step = 0, 1, intDiv(_from_us + _step - 1, _step)) AS _k0,
    if(_step = 0, 0, intDiv(_to_us, _step)) AS _k1,
    _changes AS (
        SELECT
            at,
            at_risk,
            reasons,
            teams,
            segment,
            toDecimal128(ifNull(customer_value, 0), 6) AS v,
            lagInFrame(at_risk, 1, 0) OVER _w AS p_at_risk,
            lagInFrame(reasons, 1, []) OVER _w AS p_reasons,
            lagInFrame(teams, 1, []) OVER _w AS p_teams,
            lagInFrame(segment, 1, '') OVER _w AS p_segment,
            lagInFrame(toDecimal128(ifNull(customer_value, 0), 6), 1, toDecimal128(0, 6)) OVER _w
                AS p_v
        FROM {db}.customer_risk_changes FINAL
        WHERE toUnixTimestamp64Micro(at) <= _k1 * _step
        WINDOW _w AS (PARTITION BY customer_id ORDER BY at ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
    ),
    _deltas AS (
        SELECT
            greatest(intDiv(toUnixTimestamp64Micro(at) - _k0 * _step + _step - 1, _step), 0) AS k,
            tupleElement(d, 1) AS d_grouping,
            tupleElement(d, 2) AS d_team,
            tupleElement(d, 3) AS d_segment,
            tupleElement(d, 4) AS d_reason,
            tupleElement(d, 5) AS dv,
            tupleElement(d, 6) AS dc
        FROM _changes
        ARRAY JOIN arrayConcat(
            if(at_risk = 1,
               arrayConcat(
                   [('overall', '', '', '', v, toInt64(1)), ('segment', '', segment, '', v, toInt64(1))],
                   arrayMap(x -> ('team', x, '', '', v, toInt64(1)), teams),
                   arrayMap(x -> ('reason', '', '', x, v, toInt64(1)), reasons)),
               []),
            if(p_at_risk = 1,
               arrayConcat(
                   [('overall', '', '', '', -p_v, toInt64(-1)),
                    ('segment', '', p_segment, '', -p_v, toInt64(-1))],
                   arrayMap(x -> ('team', x, '', '', -p_v, toInt64(-1)), p_teams),
                   arrayMap(x -> ('reason', '', '', x, -p_v, toInt64(-1)), p_reasons)),
               [])) AS d
    ),
    _summed AS (
        SELECT d_grouping, d_team, d_segment, d_reason, k, sum(dv) AS dv, sum(dc) AS dc
        FROM _deltas
        GROUP BY d_grouping, d_team, d_segment, d_reason, k
    ),
    _series AS (SELECT DISTINCT d_grouping, d_team, d_segment, d_reason FROM _summed),
    _grid AS (SELECT number AS k FROM numbers(toUInt64(greatest(_k1 - _k0 + 1, 0))))
SELECT
    toDateTime(intDiv((_k0 + g.k) * _step, 1000000), 'UTC') AS time,
    CAST(s.d_grouping, 'LowCardinality(String)') AS grouping,
    CAST(s.d_team, 'LowCardinality(String)') AS team,
    CAST(s.d_segment, 'LowCardinality(String)') AS segment,
    CAST(s.d_reason, 'LowCardinality(String)') AS reason,
    sum(m.dc) OVER _run AS customers,
    toFloat64(sum(m.dv) OVER _run) AS revenue
FROM _series AS s
CROSS JOIN _grid AS g
LEFT JOIN _summed AS m
    ON m.d_grouping = s.d_grouping AND m.d_team = s.d_team AND m.d_segment = s.d_segment
    AND m.d_reason = s.d_reason AND m.k = g.k
WINDOW _run AS (PARTITION BY s.d_grouping, s.d_team, s.d_segment, s.d_reason ORDER BY g.k
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
ORDER BY time, grouping, team, segment, reason;
