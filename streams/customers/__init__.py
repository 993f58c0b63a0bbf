"""Customer state: facts from the compute role, health and at-risk reasons per customer.

The compute role (keyed by conversation) turns each accepted event of a known customer into
a :class:`~streams.customers.facts.CustomerFact` on ``cxpulse.customer-facts`` (keyed by
customer); the customer role folds those facts into per-customer state with
:class:`~streams.customers.logic.CustomerLogic`. Low survey answers become follow-up records
(:mod:`streams.customers.followups`). See README "Customers".
"""
