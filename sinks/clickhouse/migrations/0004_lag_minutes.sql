-- cxpulse schema v4: samples processed after their minute closed are kept apart.
-- Placeholders: {db}, {on_cluster}.
--
-- lag_minutes = (the source partition's watermark minute when the samples were processed)
-- - (their minute); 0 for in-order samples, and for every row written before v4. The data
-- of minute M "as known when minute C closed" is then an exact, replayable selection:
-- minute <= C AND minute + lag_minutes <= C. The drop-alert evaluator reads it that way,
-- so a replay of history raises the same alerts as live traffic did.
-- One statement on purpose: ClickHouse accepts MODIFY ORDER BY only together with the
-- ADD COLUMN of the new key column, so this cannot be re-run once it has succeeded.
ALTER TABLE {db}.kpi_minute_partials {on_cluster}
    ADD COLUMN IF NOT EXISTS lag_minutes UInt16
        COMMENT 'partition watermark minute at processing minus minute (0 = in order)'
        AFTER minute,
    MODIFY ORDER BY (
        grouping, team, channel, region, priority, segment, minute, source_partition, lag_minutes
    );
