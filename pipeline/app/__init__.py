"""The roof: Faust app factories, worker processes, the local demo and the board.

Wiring only: the logic lives in ``streams`` (state, windows, the compute hot path) and
``sinks`` (ClickHouse, alert notifiers).
"""
