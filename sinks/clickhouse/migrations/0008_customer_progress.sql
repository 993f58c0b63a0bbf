-- cxpulse schema v8: how far each customer-log partition's risk history is final.
-- Placeholders: {db}, {on_cluster}, {engine_prefix}.
--
-- Written by the sink from the customer role's watermark record, after the risk changes
-- that precede it in the log, when the frozen boundary or the watermark enters a new
-- minute. Every customer_risk_changes row of the partition with
-- at <= frozen is final: no later evaluation withdraws or adds one. Revenue-at-risk
-- alerts judge only minutes every partition has frozen (README "Alerts").

CREATE TABLE IF NOT EXISTS {db}.customer_progress {on_cluster}
(
    log_partition UInt16 COMMENT 'partition of the customer log (and of the customer facts)',
    watermark DateTime64(6, 'UTC') COMMENT 'highest occurred_at among the facts the partition has read',
    frozen DateTime64(6, 'UTC') COMMENT 'the risk history of the partition is final up to here',
    version UInt64 COMMENT 'customer-log offset of the watermark record: the newest row wins',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree(version)
ORDER BY (log_partition);
