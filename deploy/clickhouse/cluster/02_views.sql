-- cxpulse on a ClickHouse cluster: the views, created on every node (ON CLUSTER).
-- Apply after 01_tables.sql. These are the views of migrations 0001 (kpi_minute), 0002 (the
-- KPI views) and 0003 (dead_letter_counts), rendered for database `cxpulse`, statement for
-- statement (tests/unit/test_clickhouse_contract.py compares them). They read the Distributed
-- tables, so each node answers for the whole cluster: the Distributed engine runs FINAL and
-- the first aggregation on every shard and merges the results on the node queried.
-- Documented column by column in docs/clickhouse.md; why the windows are parameterized views
-- and how percentiles are computed: see the comments of the 0002 migration.

-- Partials of all source partitions merged: one row per grouping, dimensions and minute.
CREATE OR REPLACE VIEW cxpulse.kpi_minute ON CLUSTER '{cluster}' AS
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
FROM cxpulse.kpi_minute_partials FINAL
GROUP BY grouping, team, channel, region, priority, segment, minute;

-- KPIs of each minute: one row per row of kpi_minute.
CREATE OR REPLACE VIEW cxpulse.kpi_minute_kpis ON CLUSTER '{cluster}' AS
WITH
    -- streams.sketch.quantile_sql, computed once per sketch: the total count (_n), the
    -- bucket representatives in key order (_v) and the cumulative counts (_c).
    arraySum(mapValues(frt_sketch)) AS _frt_n,
    arrayMap(k -> if(k = -32768, 0., 2 * pow(1.02020202020202, k) / (1.02020202020202 + 1)),
             arraySort(mapKeys(frt_sketch))) AS _frt_v,
    arrayCumSum(arraySort((c, k) -> k, mapValues(frt_sketch), mapKeys(frt_sketch)))
        AS _frt_c,
    arraySum(mapValues(reply_sketch)) AS _rpl_n,
    arrayMap(k -> if(k = -32768, 0., 2 * pow(1.02020202020202, k) / (1.02020202020202 + 1)),
             arraySort(mapKeys(reply_sketch))) AS _rpl_v,
    arrayCumSum(arraySort((c, k) -> k, mapValues(reply_sketch), mapKeys(reply_sketch)))
        AS _rpl_c,
    arraySum(mapValues(resolution_sketch)) AS _res_n,
    arrayMap(k -> if(k = -32768, 0., 2 * pow(1.02020202020202, k) / (1.02020202020202 + 1)),
             arraySort(mapKeys(resolution_sketch))) AS _res_v,
    arrayCumSum(arraySort((c, k) -> k, mapValues(resolution_sketch), mapKeys(resolution_sketch)))
        AS _res_c
SELECT
    grouping, team, channel, region, priority, segment, minute,
    -- percentile q: the first bucket whose cumulative count reaches max(q * total, 1)
    -- first response time, seconds: percentiles of the merged sketch, mean of the exact sum
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.5 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p50,
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.9 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p90,
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.95 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p95,
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.99 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p99,
    if(frt_count = 0, NULL, frt_sum_us / 1e6 / frt_count) AS frt_avg,
    -- reply time, seconds: percentiles of the merged sketch, mean of the exact sum
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.5 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p50,
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.9 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p90,
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.95 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p95,
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.99 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p99,
    if(reply_count = 0, NULL, reply_sum_us / 1e6 / reply_count) AS reply_avg,
    -- resolution time, seconds: percentiles of the merged sketch, mean of the exact sum
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.5 * _res_n, 1), _res_v, _res_c))
        AS resolution_p50,
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.9 * _res_n, 1), _res_v, _res_c))
        AS resolution_p90,
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.95 * _res_n, 1), _res_v, _res_c))
        AS resolution_p95,
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.99 * _res_n, 1), _res_v, _res_c))
        AS resolution_p99,
    if(resolution_count = 0, NULL, resolution_sum_us / 1e6 / resolution_count) AS resolution_avg,
    -- rates (plain ratios), percentages and scores; NULL when the denominator is 0
    if(frt_count = 0, NULL, frt_breaches / frt_count) AS frt_sla_breach_rate,
    if(opened = 0, NULL, resolutions / opened) AS resolution_rate,
    if(resolutions = 0, NULL, one_touch_resolutions / resolutions) AS one_touch_rate,
    if(resolutions = 0, NULL, reopens / resolutions) AS reopen_rate,
    if(csat_responses = 0, NULL, 100 * csat_satisfied / csat_responses) AS csat_pct,
    if(csat_responses = 0, NULL, csat_sum / csat_responses) AS csat_avg,
    if(nps_responses = 0, NULL,
       100 * (toInt64(nps_promoters) - toInt64(nps_detractors)) / nps_responses) AS nps,
    if(ces_responses = 0, NULL, ces_sum / ces_responses) AS ces_avg,
    if(ces_responses = 0, NULL, 100 * ces_easy / ces_responses) AS ces_easy_pct,
    -- raw counts
    opened, resolutions, reopens, one_touch_resolutions,
    frt_count, frt_breaches, reply_count, resolution_count,
    csat_responses, csat_satisfied, nps_responses, nps_promoters,
    nps_detractors, ces_responses, ces_easy,
    messages_customer, messages_agent_human, messages_agent_bot, events
FROM cxpulse.kpi_minute;


-- KPIs of one window: the N minutes ending at end_minute (floored to the minute), one row per
-- grouping and dimensions with data in it. minute = E, the window's last minute.
--   SELECT * FROM cxpulse.kpi_window(window_minutes = 60, end_minute = now())
CREATE OR REPLACE VIEW cxpulse.kpi_window ON CLUSTER '{cluster}' AS
WITH
    -- streams.sketch.quantile_sql, computed once per sketch: the total count (_n), the
    -- bucket representatives in key order (_v) and the cumulative counts (_c).
    arraySum(mapValues(frt_sketch)) AS _frt_n,
    arrayMap(k -> if(k = -32768, 0., 2 * pow(1.02020202020202, k) / (1.02020202020202 + 1)),
             arraySort(mapKeys(frt_sketch))) AS _frt_v,
    arrayCumSum(arraySort((c, k) -> k, mapValues(frt_sketch), mapKeys(frt_sketch)))
        AS _frt_c,
    arraySum(mapValues(reply_sketch)) AS _rpl_n,
    arrayMap(k -> if(k = -32768, 0., 2 * pow(1.02020202020202, k) / (1.02020202020202 + 1)),
             arraySort(mapKeys(reply_sketch))) AS _rpl_v,
    arrayCumSum(arraySort((c, k) -> k, mapValues(reply_sketch), mapKeys(reply_sketch)))
        AS _rpl_c,
    arraySum(mapValues(resolution_sketch)) AS _res_n,
    arrayMap(k -> if(k = -32768, 0., 2 * pow(1.02020202020202, k) / (1.02020202020202 + 1)),
             arraySort(mapKeys(resolution_sketch))) AS _res_v,
    arrayCumSum(arraySort((c, k) -> k, mapValues(resolution_sketch), mapKeys(resolution_sketch)))
        AS _res_c
SELECT
    grouping, team, channel, region, priority, segment,
    toStartOfMinute({end_minute:DateTime('UTC')}) AS minute,
    {window_minutes:UInt32} AS window_minutes,
    -- percentile q: the first bucket whose cumulative count reaches max(q * total, 1)
    -- first response time, seconds: percentiles of the merged sketch, mean of the exact sum
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.5 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p50,
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.9 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p90,
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.95 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p95,
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.99 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p99,
    if(frt_count = 0, NULL, frt_sum_us / 1e6 / frt_count) AS frt_avg,
    -- reply time, seconds: percentiles of the merged sketch, mean of the exact sum
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.5 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p50,
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.9 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p90,
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.95 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p95,
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.99 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p99,
    if(reply_count = 0, NULL, reply_sum_us / 1e6 / reply_count) AS reply_avg,
    -- resolution time, seconds: percentiles of the merged sketch, mean of the exact sum
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.5 * _res_n, 1), _res_v, _res_c))
        AS resolution_p50,
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.9 * _res_n, 1), _res_v, _res_c))
        AS resolution_p90,
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.95 * _res_n, 1), _res_v, _res_c))
        AS resolution_p95,
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.99 * _res_n, 1), _res_v, _res_c))
        AS resolution_p99,
    if(resolution_count = 0, NULL, resolution_sum_us / 1e6 / resolution_count) AS resolution_avg,
    -- rates (plain ratios), percentages and scores; NULL when the denominator is 0
    if(frt_count = 0, NULL, frt_breaches / frt_count) AS frt_sla_breach_rate,
    if(opened = 0, NULL, resolutions / opened) AS resolution_rate,
    if(resolutions = 0, NULL, one_touch_resolutions / resolutions) AS one_touch_rate,
    if(resolutions = 0, NULL, reopens / resolutions) AS reopen_rate,
    if(csat_responses = 0, NULL, 100 * csat_satisfied / csat_responses) AS csat_pct,
    if(csat_responses = 0, NULL, csat_sum / csat_responses) AS csat_avg,
    if(nps_responses = 0, NULL,
       100 * (toInt64(nps_promoters) - toInt64(nps_detractors)) / nps_responses) AS nps,
    if(ces_responses = 0, NULL, ces_sum / ces_responses) AS ces_avg,
    if(ces_responses = 0, NULL, 100 * ces_easy / ces_responses) AS ces_easy_pct,
    -- raw counts
    opened, resolutions, reopens, one_touch_resolutions,
    frt_count, frt_breaches, reply_count, resolution_count,
    csat_responses, csat_satisfied, nps_responses, nps_promoters,
    nps_detractors, ces_responses, ces_easy,
    messages_customer, messages_agent_human, messages_agent_bot, events
FROM
(
    SELECT
        grouping, team, channel, region, priority, segment,
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
    FROM cxpulse.kpi_minute
    WHERE minute >= toStartOfMinute({end_minute:DateTime('UTC')})
                    - toIntervalMinute({window_minutes:UInt32} - 1)
      AND minute <= {end_minute:DateTime('UTC')}
      AND {window_minutes:UInt32} >= 1  -- a window of 0 minutes is empty: no rows
    GROUP BY grouping, team, channel, region, priority, segment
);


-- Rolling windows: for every minute E in [from_minute, to_minute] at which a grouping and
-- dimensions have a row, the KPIs of the N minutes E-N+1 .. E. Reads the minutes
-- from_minute-N+1 .. to_minute only (from_minute rounded up to a whole minute). Each window is
-- the difference of two running sums over its series (every minute up to E, minus every
-- minute up to E-N): exact for counts, sums and sketch buckets, and O(1) per row whatever N is.
--   SELECT minute, frt_p90 FROM cxpulse.kpi_rolling(window_minutes = 60,
--       from_minute = now() - INTERVAL 1 DAY, to_minute = now())
--   WHERE grouping = 'team' AND team = 'billing' ORDER BY minute
CREATE OR REPLACE VIEW cxpulse.kpi_rolling ON CLUSTER '{cluster}' AS
WITH
    -- streams.sketch.quantile_sql, computed once per sketch: the total count (_n), the
    -- bucket representatives in key order (_v) and the cumulative counts (_c).
    arraySum(mapValues(frt_sketch)) AS _frt_n,
    arrayMap(k -> if(k = -32768, 0., 2 * pow(1.02020202020202, k) / (1.02020202020202 + 1)),
             arraySort(mapKeys(frt_sketch))) AS _frt_v,
    arrayCumSum(arraySort((c, k) -> k, mapValues(frt_sketch), mapKeys(frt_sketch)))
        AS _frt_c,
    arraySum(mapValues(reply_sketch)) AS _rpl_n,
    arrayMap(k -> if(k = -32768, 0., 2 * pow(1.02020202020202, k) / (1.02020202020202 + 1)),
             arraySort(mapKeys(reply_sketch))) AS _rpl_v,
    arrayCumSum(arraySort((c, k) -> k, mapValues(reply_sketch), mapKeys(reply_sketch)))
        AS _rpl_c,
    arraySum(mapValues(resolution_sketch)) AS _res_n,
    arrayMap(k -> if(k = -32768, 0., 2 * pow(1.02020202020202, k) / (1.02020202020202 + 1)),
             arraySort(mapKeys(resolution_sketch))) AS _res_v,
    arrayCumSum(arraySort((c, k) -> k, mapValues(resolution_sketch), mapKeys(resolution_sketch)))
        AS _res_c
SELECT
    grouping, team, channel, region, priority, segment, minute,
    {window_minutes:UInt32} AS window_minutes,
    -- percentile q: the first bucket whose cumulative count reaches max(q * total, 1)
    -- first response time, seconds: percentiles of the merged sketch, mean of the exact sum
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.5 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p50,
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.9 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p90,
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.95 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p95,
    if(_frt_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.99 * _frt_n, 1), _frt_v, _frt_c))
        AS frt_p99,
    if(frt_count = 0, NULL, frt_sum_us / 1e6 / frt_count) AS frt_avg,
    -- reply time, seconds: percentiles of the merged sketch, mean of the exact sum
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.5 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p50,
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.9 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p90,
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.95 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p95,
    if(_rpl_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.99 * _rpl_n, 1), _rpl_v, _rpl_c))
        AS reply_p99,
    if(reply_count = 0, NULL, reply_sum_us / 1e6 / reply_count) AS reply_avg,
    -- resolution time, seconds: percentiles of the merged sketch, mean of the exact sum
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.5 * _res_n, 1), _res_v, _res_c))
        AS resolution_p50,
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.9 * _res_n, 1), _res_v, _res_c))
        AS resolution_p90,
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.95 * _res_n, 1), _res_v, _res_c))
        AS resolution_p95,
    if(_res_n = 0, NULL,
       arrayFirst((v, s) -> s >= greatest(0.99 * _res_n, 1), _res_v, _res_c))
        AS resolution_p99,
    if(resolution_count = 0, NULL, resolution_sum_us / 1e6 / resolution_count) AS resolution_avg,
    -- rates (plain ratios), percentages and scores; NULL when the denominator is 0
    if(frt_count = 0, NULL, frt_breaches / frt_count) AS frt_sla_breach_rate,
    if(opened = 0, NULL, resolutions / opened) AS resolution_rate,
    if(resolutions = 0, NULL, one_touch_resolutions / resolutions) AS one_touch_rate,
    if(resolutions = 0, NULL, reopens / resolutions) AS reopen_rate,
    if(csat_responses = 0, NULL, 100 * csat_satisfied / csat_responses) AS csat_pct,
    if(csat_responses = 0, NULL, csat_sum / csat_responses) AS csat_avg,
    if(nps_responses = 0, NULL,
       100 * (toInt64(nps_promoters) - toInt64(nps_detractors)) / nps_responses) AS nps,
    if(ces_responses = 0, NULL, ces_sum / ces_responses) AS ces_avg,
    if(ces_responses = 0, NULL, 100 * ces_easy / ces_responses) AS ces_easy_pct,
    -- raw counts
    opened, resolutions, reopens, one_touch_resolutions,
    frt_count, frt_breaches, reply_count, resolution_count,
    csat_responses, csat_satisfied, nps_responses, nps_promoters,
    nps_detractors, ces_responses, ces_easy,
    messages_customer, messages_agent_human, messages_agent_bot, events
FROM
(
    SELECT
        grouping, team, channel, region, priority, segment, minute,
        toUInt64(sum(opened) OVER upto_end - sum(opened) OVER before_window) AS opened,
        toUInt64(sum(resolutions) OVER upto_end
                 - sum(resolutions) OVER before_window) AS resolutions,
        toUInt64(sum(reopens) OVER upto_end - sum(reopens) OVER before_window) AS reopens,
        toUInt64(sum(one_touch_resolutions) OVER upto_end
                 - sum(one_touch_resolutions) OVER before_window) AS one_touch_resolutions,
        toUInt64(sum(frt_count) OVER upto_end - sum(frt_count) OVER before_window) AS frt_count,
        toUInt64(sum(frt_sum_us) OVER upto_end - sum(frt_sum_us) OVER before_window) AS frt_sum_us,
        toUInt64(sum(frt_breaches) OVER upto_end
                 - sum(frt_breaches) OVER before_window) AS frt_breaches,
        mapFilter((k, n) -> n != 0, mapSubtract(
            sumMap(frt_sketch) OVER upto_end, sumMap(frt_sketch) OVER before_window))
            AS frt_sketch,
        toUInt64(sum(reply_count) OVER upto_end
                 - sum(reply_count) OVER before_window) AS reply_count,
        toUInt64(sum(reply_sum_us) OVER upto_end
                 - sum(reply_sum_us) OVER before_window) AS reply_sum_us,
        mapFilter((k, n) -> n != 0, mapSubtract(
            sumMap(reply_sketch) OVER upto_end, sumMap(reply_sketch) OVER before_window))
            AS reply_sketch,
        toUInt64(sum(resolution_count) OVER upto_end
                 - sum(resolution_count) OVER before_window) AS resolution_count,
        toUInt64(sum(resolution_sum_us) OVER upto_end
                 - sum(resolution_sum_us) OVER before_window) AS resolution_sum_us,
        mapFilter((k, n) -> n != 0, mapSubtract(
            sumMap(resolution_sketch) OVER upto_end, sumMap(resolution_sketch) OVER before_window))
            AS resolution_sketch,
        toUInt64(sum(csat_responses) OVER upto_end
                 - sum(csat_responses) OVER before_window) AS csat_responses,
        toUInt64(sum(csat_sum) OVER upto_end - sum(csat_sum) OVER before_window) AS csat_sum,
        toUInt64(sum(csat_satisfied) OVER upto_end
                 - sum(csat_satisfied) OVER before_window) AS csat_satisfied,
        toUInt64(sum(nps_responses) OVER upto_end
                 - sum(nps_responses) OVER before_window) AS nps_responses,
        toUInt64(sum(nps_promoters) OVER upto_end
                 - sum(nps_promoters) OVER before_window) AS nps_promoters,
        toUInt64(sum(nps_detractors) OVER upto_end
                 - sum(nps_detractors) OVER before_window) AS nps_detractors,
        toUInt64(sum(ces_responses) OVER upto_end
                 - sum(ces_responses) OVER before_window) AS ces_responses,
        toUInt64(sum(ces_sum) OVER upto_end - sum(ces_sum) OVER before_window) AS ces_sum,
        toUInt64(sum(ces_easy) OVER upto_end - sum(ces_easy) OVER before_window) AS ces_easy,
        toUInt64(sum(messages_customer) OVER upto_end
                 - sum(messages_customer) OVER before_window) AS messages_customer,
        toUInt64(sum(messages_agent_human) OVER upto_end
                 - sum(messages_agent_human) OVER before_window) AS messages_agent_human,
        toUInt64(sum(messages_agent_bot) OVER upto_end
                 - sum(messages_agent_bot) OVER before_window) AS messages_agent_bot,
        toUInt64(sum(events) OVER upto_end - sum(events) OVER before_window) AS events
    FROM cxpulse.kpi_minute
    WHERE minute >= toStartOfMinute({from_minute:DateTime('UTC')} + 59)
                    - toIntervalMinute({window_minutes:UInt32} - 1)
      AND minute <= {to_minute:DateTime('UTC')}
      AND {window_minutes:UInt32} >= 1  -- a window of 0 minutes is empty: no rows
    WINDOW
        upto_end AS (PARTITION BY grouping, team, channel, region, priority, segment
                     ORDER BY minute ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
        before_window AS (PARTITION BY grouping, team, channel, region, priority, segment
                          ORDER BY minute RANGE BETWEEN UNBOUNDED PRECEDING
                                                    AND {window_minutes:UInt32} * 60 PRECEDING)
)
-- the minutes before from_minute were read only to fill the first windows
WHERE minute >= toStartOfMinute({from_minute:DateTime('UTC')} + 59);


-- Latest value per team, for boards: the KPIs of the 15-minute window ending at the newest
-- minute stored (event time, over all groupings, as the CLI board does). A team without data
-- in those 15 minutes has no row. Same columns as kpi_window (replace this view whenever
-- kpi_window's columns change: a view stores the column list it was created with).
CREATE OR REPLACE VIEW cxpulse.kpi_latest_team ON CLUSTER '{cluster}' AS
SELECT *
FROM cxpulse.kpi_window(
    window_minutes = 15,
    end_minute = (SELECT max(minute) FROM cxpulse.kpi_minute_partials)
)
WHERE grouping = 'team';

-- Dead letters per minute and reason, for boards and alerting on bad producers.
CREATE OR REPLACE VIEW cxpulse.dead_letter_counts ON CLUSTER '{cluster}' AS
SELECT
    toStartOfMinute(source_time) AS minute,
    reason,
    source_topic,
    count() AS dead_letters
FROM cxpulse.dead_letters FINAL
GROUP BY minute, reason, source_topic;
