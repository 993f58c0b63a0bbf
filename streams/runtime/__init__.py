"""The batch runtime of stateful roles: consume in batches, fold, produce, commit atomically.

A role supplies a :class:`~streams.runtime.contracts.PartitionLogic` per input partition
(pure batch logic over local state); the runtime owns Kafka (consumer group, one
transactional producer per input partition), the local state store and its recovery from
the changelog. See README "The hot path".
"""
