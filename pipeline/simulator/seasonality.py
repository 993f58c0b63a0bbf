"""Daily and weekly arrival seasonality, by region-local time.

Support traffic peaks mid-morning on working days, dips at lunch, fades in the evening and
is near zero at night; weekends run at a fraction of weekday traffic. The curve is a
168-entry table (one factor per local hour of the week, Monday 00:00 first) so a lookup is
one index, which matters because the arrival process consults it for every candidate.
"""

from __future__ import annotations

__all__ = [
    "HOURLY_WEEKDAY_CURVE",
    "hour_of_week",
    "mean_season_factor",
    "season_factor",
    "week_table",
]

# Relative arrival rate per local hour on a weekday; 1.0 is the 9-11 am peak.
HOURLY_WEEKDAY_CURVE: tuple[float, ...] = (
    0.06, 0.04, 0.03, 0.03, 0.03, 0.05,  # 00-05: night
    0.12, 0.30, 0.65, 1.00, 1.00, 0.90,  # 06-11: morning ramp, 9-11 peak
    0.75, 0.80, 0.82, 0.78, 0.70, 0.50,  # 12-17: lunch dip, afternoon
    0.35, 0.28, 0.22, 0.17, 0.12, 0.08,  # 18-23: evening
)  # fmt: skip

_HOUR_US = 3_600_000_000
# 1970-01-01 was a Thursday: shift by 3 days so index 0 is Monday 00:00.
_EPOCH_WEEK_SHIFT_H = 72


def week_table(weekend_factors: tuple[float, float] = (0.35, 0.25)) -> tuple[float, ...]:
    """The 168 hourly factors of a week (Monday first), weekends scaled down."""
    saturday, sunday = weekend_factors
    table: list[float] = []
    for day in range(7):
        scale = saturday if day == 5 else sunday if day == 6 else 1.0
        table.extend(scale * f for f in HOURLY_WEEKDAY_CURVE)
    return tuple(table)


def hour_of_week(epoch_us: int, utc_offset_minutes: int) -> int:
    """Local hour of the week (0 = Monday 00:00-00:59) of a UTC instant."""
    local_h = (epoch_us + utc_offset_minutes * 60_000_000) // _HOUR_US
    return (local_h + _EPOCH_WEEK_SHIFT_H) % 168


def season_factor(
    epoch_us: int, utc_offset_minutes: int, table: tuple[float, ...] | None = None
) -> float:
    """Arrival rate factor (0..1) at a UTC instant for a region with that offset."""
    return (table or _DEFAULT_TABLE)[hour_of_week(epoch_us, utc_offset_minutes)]


def mean_season_factor(table: tuple[float, ...] | None = None) -> float:
    """Average factor over a week: mean rate = peak rate x this (~0.33 by default)."""
    t = table or _DEFAULT_TABLE
    return sum(t) / len(t)


_DEFAULT_TABLE = week_table()
