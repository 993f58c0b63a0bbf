"""Drop alerts on ClickHouse: the evaluator's reads and state, delivery, and read queries.

The detector itself is pure (``streams.alerts``); this package feeds it the minute
partials known at each closed minute, persists its transitions and state (migration
0006), and delivers notifications to Alertmanager and a generic webhook.
"""
