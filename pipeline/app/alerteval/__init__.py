"""``cxpulse evaluate-alerts``: the drop detector measured on simulated multi-week histories.

``scenario`` builds a history per seed (teams of very different volume, drift, quiet weeks
and incident weeks), ``feed`` runs it through the pipeline's own conversation logic into
the same detector the workers run, ``score`` turns alerts and ground truth into the
figures the issue sets targets for.
"""
