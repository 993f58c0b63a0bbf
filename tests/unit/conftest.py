"""Fixtures shared by unit-test modules."""

from __future__ import annotations

import pytest

from tests.unit.test_customer_month import Month


@pytest.fixture(scope="session")
def month() -> Month:
    """The simulated month through the customer path (test_customer_month.py), built once."""
    return Month()
