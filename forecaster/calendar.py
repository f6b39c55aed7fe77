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

LONGEST_BREAK = 31
"""Days looked back for the holiday a working day follows: China's longest break (Spring
Festival with its weekends) is nine days."""


@lru_cache(maxsize=32)
def _calendar(country: str, years: tuple[int, ...]) -> holidays.HolidayBase:
    try:
        return holidays.country_holidays(country, years=list(years))
    except NotImplementedError:
        # the package's "Country cn not available" read as a feature surgecast lacked,
        # raised from deep in a model's fit (and each retrain of a scaler)
        raise ValueError(
            f"country {country!r} has no holiday calendar: use a code of the holidays"
            " package such as CN or US, or None for Saturday and Sunday weekends only"
        ) from None


def check_country(country: str) -> None:
    """Raise ``ValueError`` unless ``country`` names a holiday calendar: checked where it is
    given (a CLI option, a scaler's spec), not at the first fit, nor at every retrain."""
    _calendar(country, ())


def day_types(days: Iterable[date], country: str | None = "CN") -> np.ndarray:
    """``WORKING``, ``WEEKEND`` or ``HOLIDAY`` for each date (make-up days are working).

    With no ``country``, Saturdays and Sundays are the weekend and no day is a holiday.
    """
    days = list(days)
    if not days:
        return np.zeros(0, dtype=np.int8)
    if not country:
        return np.array([WEEKEND if d.weekday() >= 5 else WORKING for d in days], dtype=np.int8)
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


def _span(first: int, last: int) -> list[date]:
    return [date.fromordinal(o) for o in range(first, last + 1)]


def last_working_days_of_month(days: Iterable[date], country: str | None = "CN") -> set[date]:
    """The last working day of every month touched by ``days`` (month-end surges fall there)."""
    days = sorted({date.fromordinal(d.toordinal()) for d in days})
    if not days:
        return set()
    span = _span(days[0].replace(day=1).toordinal(), days[-1].toordinal() + 40)
    types = day_types(span, country)
    last: dict[tuple[int, int], date] = {}
    for day, kind in zip(span, types, strict=True):
        if kind == WORKING:
            last[(day.year, day.month)] = day
    return {last[(d.year, d.month)] for d in days if (d.year, d.month) in last}


def first_working_days_after_holidays(
    days: Iterable[date], country: str | None = "CN"
) -> set[date]:
    """Those of ``days`` that are the first working day after a break with a public holiday
    in it (the backlog of a closure lands there: a card-replacement service after a
    holiday). An ordinary weekend is no such break; a holiday on a Monday is."""
    days = sorted({date.fromordinal(d.toordinal()) for d in days})
    if not days:
        return set()
    span = _span(days[0].toordinal() - LONGEST_BREAK, days[-1].toordinal())
    found = set()
    after_holiday = False
    for day, kind in zip(span, day_types(span, country), strict=True):
        if kind == WORKING:
            if after_holiday:
                found.add(day)
            after_holiday = False
        elif kind == HOLIDAY:
            after_holiday = True
    return found.intersection(days)
