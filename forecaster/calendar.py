"""Working days, weekends, public holidays and make-up working days.

Chinese public services follow the official calendar: some weekend days are working days
("make-up" days, 调休) and some weekdays are holidays. The ``holidays`` package knows both;
the generator and the models read day types from here so they agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import lru_cache

import holidays
import numpy as np

WORKING, WEEKEND, HOLIDAY = 0, 1, 2
DAY_TYPE_NAMES = ("working", "weekend", "holiday")


@lru_cache(maxsize=32)
def _calendar(country: str, years: tuple[int, ...]) -> holidays.HolidayBase:
    return holidays.country_holidays(country, years=list(years))


def day_types(days: Iterable[date], country: str = "CN") -> np.ndarray:
    """``WORKING``, ``WEEKEND`` or ``HOLIDAY`` for each date (make-up days are working)."""
    days = list(days)
    if not days:
        return np.zeros(0, dtype=np.int8)
    cal = _calendar(country, tuple(sorted({d.year for d in days})))
    out = np.empty(len(days), dtype=np.int8)
    for n, day in enumerate(days):
        if day in cal:
            out[n] = HOLIDAY
        elif cal.is_working_day(day):
            out[n] = WORKING
        else:
            out[n] = WEEKEND
    return out


def last_working_days_of_month(days: Iterable[date], country: str = "CN") -> set[date]:
    """The last working day of every month touched by ``days`` (month-end surges fall there)."""
    days = sorted(set(days))
    if not days:
        return set()
    span = [
        date.fromordinal(o)
        for o in range(days[0].replace(day=1).toordinal(), days[-1].toordinal() + 40)
    ]
    types = day_types(span, country)
    last: dict[tuple[int, int], date] = {}
    for day, kind in zip(span, types, strict=True):
        if kind == WORKING:
            last[(day.year, day.month)] = day
    return {last[(d.year, d.month)] for d in days if (d.year, d.month) in last}
