-- cxpulse schema v6: the drop-alert evaluator's state. Placeholders: {db}, {on_cluster},
-- {engine_prefix}.
--
-- alerts gains the rule, the event-time minutes it fired and resolved, the wall time it
-- was notified, and the samples behind it. alert_checkpoints holds, in one row, the last
-- evaluated minute and every alert state, so a restarted evaluator resumes exactly there;
-- alert_outbox holds every transition per receiver until the receiver accepted it.
ALTER TABLE {db}.alerts {on_cluster}
    ADD COLUMN IF NOT EXISTS rule LowCardinality(String) COMMENT 'rule name in the rules file',
    ADD COLUMN IF NOT EXISTS fired_at DateTime('UTC') COMMENT 'event-time minute it fired',
    ADD COLUMN IF NOT EXISTS resolved_at Nullable(DateTime('UTC'))
        COMMENT 'event-time minute it resolved; NULL while firing',
    ADD COLUMN IF NOT EXISTS window_minutes UInt32 COMMENT 'window that showed the drop',
    ADD COLUMN IF NOT EXISTS samples UInt64 COMMENT 'samples in that window',
    ADD COLUMN IF NOT EXISTS baseline_samples UInt64 COMMENT 'samples in its baseline',
    ADD COLUMN IF NOT EXISTS z Float64 COMMENT 'test statistic (burn rate ratio for SLO rules)',
    ADD COLUMN IF NOT EXISTS description String,
    ADD COLUMN IF NOT EXISTS notified_at Nullable(DateTime64(3, 'UTC'))
        COMMENT 'wall time every receiver accepted the firing notification',
    ADD COLUMN IF NOT EXISTS resolved_notified_at Nullable(DateTime64(3, 'UTC'))
        COMMENT 'wall time every receiver accepted the resolved notification';

CREATE TABLE IF NOT EXISTS {db}.alert_checkpoints {on_cluster}
(
    evaluator LowCardinality(String) COMMENT 'evaluator name (one per database)',
    minute DateTime('UTC') COMMENT 'last evaluated (closed) minute',
    rules_digest String COMMENT 'sha256 prefix of the rules file',
    state String COMMENT 'JSON: every alert state, per rule and group',
    version UInt64 COMMENT 'the minute as a number: the newest wins',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree(version)
ORDER BY (evaluator);

CREATE TABLE IF NOT EXISTS {db}.alert_outbox {on_cluster}
(
    receiver LowCardinality(String) COMMENT 'alertmanager or webhook',
    transition_id String COMMENT 'alert_id/firing or alert_id/resolved (the idempotency key)',
    alert_id String,
    state LowCardinality(String) COMMENT 'firing or resolved',
    minute DateTime('UTC') COMMENT 'event-time minute of the transition',
    payload String COMMENT 'JSON of the notification',
    status LowCardinality(String) COMMENT 'pending or delivered',
    attempts UInt32 COMMENT 'delivery attempts so far',
    last_error String,
    delivered_at Nullable(DateTime64(3, 'UTC')),
    version UInt64 COMMENT '2 x attempts (+1 once delivered): the newest wins',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {engine_prefix}ReplacingMergeTree(version)
PARTITION BY toYYYYMM(minute)
ORDER BY (receiver, transition_id);
