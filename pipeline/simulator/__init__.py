"""Deterministic, realistic load generator for cxpulse (pure library: no Kafka here).

``simulate(SimulationParams(...))`` streams :class:`SimEvent` s in arrival order; the CLI
produces them (key = conversation id) and paces on ``arrival`` in real-time mode.
"""

from pipeline.simulator.customers import CustomerLedger
from pipeline.simulator.faults import MALFORMED_FAMILIES
from pipeline.simulator.generator import (
    KINDS,
    MEAN_EVENTS_PER_CONVERSATION,
    SimEvent,
    Summary,
    rate_for_events_per_second,
    simulate,
    summarize,
)
from pipeline.simulator.incidents import (
    INCIDENT_KPIS,
    Incident,
    ground_truth,
    parse_duration,
    parse_incident,
)
from pipeline.simulator.params import (
    ChannelProfile,
    LogNormal,
    PriorityProfile,
    RegionProfile,
    SegmentProfile,
    SimulationParams,
)

__all__ = [
    "INCIDENT_KPIS",
    "KINDS",
    "MALFORMED_FAMILIES",
    "MEAN_EVENTS_PER_CONVERSATION",
    "ChannelProfile",
    "CustomerLedger",
    "Incident",
    "LogNormal",
    "PriorityProfile",
    "RegionProfile",
    "SegmentProfile",
    "SimEvent",
    "SimulationParams",
    "Summary",
    "ground_truth",
    "parse_duration",
    "parse_incident",
    "rate_for_events_per_second",
    "simulate",
    "summarize",
]
