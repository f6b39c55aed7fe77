"""Seeded synthetic traffic for public-service portals: rates, access logs and true counts.

Real raw access logs of such services are not public, so the demo, the tests and the
benchmarks generate them here. The traffic has what makes these services hard to scale:
working-day peaks at 9-11 and 14-17 local time with a lunch dip, quiet nights, weekends at
about a third, public holidays and make-up working days (CN calendar), month-end and
deadline surges several times the normal peak, announcement-driven flash crowds,
maintenance windows with no traffic, over-dispersed noise and slow growth.

Everything is vectorised over seconds with NumPy and written with polars, so millions of
log lines take seconds. The same seed gives byte-identical output.
"""

from __future__ import annotations

import bz2
import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl

from forecaster.calendar import HOLIDAY, WEEKEND, day_types, last_working_days_of_month

DAY = 86400


@dataclass(frozen=True)
class TrafficProfile:
    """The shape of a portal's demand. Rates are requests per second."""

    service: str = "pension"
    """Series label, and which paths the log lines use (one of :data:`SERVICES`; any other
    label uses the pension portal's paths)."""

    tz: str = "Asia/Shanghai"
    """Local time zone: peaks follow office hours there, and log lines carry its offset."""

    peak_rps: float = 5.0
    """Expected rate at an ordinary working day's 10 a.m. peak, before growth."""

    night_level: float = 0.04
    """Rate at night as a fraction of the peak: public portals are nearly idle at 3 a.m."""

    weekend_level: float = 0.35
    """Weekend days run at about a third of a working day (30-40 % in real portals)."""

    holiday_level: float = 0.25
    """Public holidays are quieter still."""

    month_end_boost: float = 2.5
    """Multiplier at the morning peak of the last working day of each month."""

    deadlines: tuple[date, ...] = ()
    """Policy deadline days (local dates): a surge all working day long."""

    deadline_boost: float = 4.0
    """Multiplier at a deadline day's peak; the day before gets a third of the extra."""

    flash_crowds_per_week: float = 1.0
    """Announcements (a news item, a text message campaign) per week, at random times."""

    flash_boost: float = 3.0
    """Multiplier at the start of a flash crowd, decaying exponentially."""

    flash_decay_minutes: float = 25.0
    """E-folding time of a flash crowd."""

    maintenance_every_days: int = 14
    """A maintenance window every this many days (0: none)."""

    maintenance_hours: tuple[float, float] = (2.0, 4.0)
    """Local hours of the window, on the first Sunday and every ``maintenance_every_days``."""

    dispersion: float = 30.0
    """Gamma shape of the per-minute noise multiplier: lower is burstier (over-dispersion)."""

    growth_per_week: float = 0.02
    """Slow growth of demand, compounded weekly."""

    extra_maintenance: tuple[tuple[datetime, datetime], ...] = field(default_factory=tuple)
    """Further outage windows, as local (naive) start and end times."""


@dataclass(frozen=True)
class Traffic:
    """Generated traffic: one expected rate and one realised count per second."""

    profile: TrafficProfile
    start_utc: pd.Timestamp
    """The first second, in UTC (local midnight of the start date)."""

    expected_rps: np.ndarray
    counts: np.ndarray
    maintenance: np.ndarray
    """True in seconds inside a maintenance window (no traffic at all)."""

    @property
    def seconds(self) -> int:
        return len(self.counts)

    @property
    def requests(self) -> int:
        return int(self.counts.sum())

    def true_counts(self, freq: str = "1min") -> pd.DataFrame:
        """Requests per interval as a long-format series frame (``ds`` in UTC).

        Exactly what ingesting the written log gives (with ``--gap 0``): every line's
        timestamp is a whole second, and the counts here are sums of the seconds.
        """
        step = int(pd.Timedelta(freq).total_seconds())
        if step < 1 or DAY % step:
            raise ValueError(f"freq {freq!r} must be a whole number of seconds dividing a day")
        epoch = int(self.start_utc.value // 1_000_000_000)
        first_bucket = epoch - epoch % step
        index = (epoch + np.arange(self.seconds) - first_bucket) // step
        totals = np.bincount(index, weights=self.counts, minlength=int(index[-1]) + 1)
        ds = pd.to_datetime(first_bucket + np.arange(len(totals)) * step, unit="s")
        return pd.DataFrame(
            {"unique_id": self.profile.service, "ds": ds, "y": totals.astype(float)}
        )

    def expected_rate(self, freq: str = "1min") -> pd.DataFrame:
        """Noise-free expected requests per interval, same shape as :meth:`true_counts`."""
        series = pd.Series(
            self.expected_rps, index=self.start_utc + pd.to_timedelta(np.arange(self.seconds), "s")
        )
        summed = series.resample(pd.Timedelta(freq)).sum()
        return pd.DataFrame(
            {
                "unique_id": self.profile.service,
                "ds": summed.index.tz_localize(None),
                "y": summed.to_numpy(),
            }
        )


def working_day_shape(hour: np.ndarray) -> np.ndarray:
    """Relative demand by local hour on a working day: 1.0 at 10:00, a lunch dip, 0.9 at 15:30."""

    def bump(center: float, width: float) -> np.ndarray:
        return np.exp(-0.5 * ((hour - center) / width) ** 2)

    return bump(10.0, 1.5) + 0.9 * bump(15.5, 1.6) + 0.12 * bump(20.0, 1.5)


def generate_traffic(profile: TrafficProfile, start: date, days: int, seed: int = 0) -> Traffic:
    """Expected rate and realised per-second counts for ``days`` local days from ``start``."""
    if days <= 0:
        raise ValueError("days must be positive")
    zone = ZoneInfo(profile.tz)
    start_local = pd.Timestamp(datetime(start.year, start.month, start.day), tz=zone)
    start_utc = start_local.tz_convert("UTC")
    seconds = np.arange(days * DAY)
    local = (start_utc + pd.to_timedelta(seconds, "s")).tz_convert(zone).tz_localize(None)
    since_start = (local - pd.Timestamp(start)).to_numpy().astype("timedelta64[s]").astype(np.int64)
    day_index = since_start // DAY  # local calendar day of each second, 0 = start
    hour = (since_start % DAY) / 3600.0
    calendar_days = [start + timedelta(days=d) for d in range(int(day_index.max()) + 1)]
    kinds = day_types(calendar_days)[day_index]

    shape = working_day_shape(hour)
    level = np.where(kinds == WEEKEND, profile.weekend_level, 1.0)
    level = np.where(kinds == HOLIDAY, profile.holiday_level, level)
    peak_shape = working_day_shape(np.array([10.0]))[0]
    rate = (
        profile.peak_rps
        * (profile.night_level + (1 - profile.night_level) * shape / peak_shape)
        * level
    )
    rate *= _surges(profile, calendar_days, day_index, hour)
    rng = np.random.default_rng(seed)
    rate *= _flash_crowds(profile, len(seconds), hour, kinds, rng)
    rate *= (1 + profile.growth_per_week) ** (seconds / (7 * DAY))
    maintenance = _maintenance(profile, calendar_days, day_index, hour, local)
    rate[maintenance] = 0.0

    minutes = len(seconds) // 60 + 1
    noise = rng.gamma(profile.dispersion, 1 / profile.dispersion, size=minutes)[seconds // 60]
    counts = rng.poisson(rate * noise).astype(np.int32)
    return Traffic(profile, start_utc, rate, counts, maintenance)


def _surges(
    profile: TrafficProfile, days: list[date], day_index: np.ndarray, hour: np.ndarray
) -> np.ndarray:
    """Month-end and deadline multipliers, concentrated in office hours."""
    month_ends = last_working_days_of_month(days)
    deadlines = set(profile.deadlines)
    eves = {d - timedelta(days=1) for d in deadlines}
    is_month_end = np.array([d in month_ends for d in days])[day_index]
    is_deadline = np.array([d in deadlines for d in days])[day_index]
    is_eve = np.array([d in eves for d in days])[day_index]
    morning = np.exp(-0.5 * ((hour - 10.0) / 1.5) ** 2)
    office = np.exp(-0.5 * ((hour - 11.5) / 3.5) ** 2)
    extra = profile.deadline_boost - 1
    return (
        1
        + is_month_end * (profile.month_end_boost - 1) * morning
        + (is_deadline + is_eve / 3) * extra * office
    )


def _flash_crowds(
    profile: TrafficProfile, n: int, hour: np.ndarray, kinds: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Sudden jumps that decay: announcements land in office hours of working days."""
    factor = np.ones(n)
    expected = profile.flash_crowds_per_week * n / (7 * DAY)
    candidates = np.flatnonzero((kinds == 0) & (hour >= 8) & (hour <= 18))
    if expected <= 0 or len(candidates) == 0:
        return factor
    starts = np.sort(rng.choice(candidates, size=rng.poisson(expected), replace=True))
    decay = profile.flash_decay_minutes * 60
    for start in starts:
        length = min(n - start, int(decay * 6))
        factor[start : start + length] += (profile.flash_boost - 1) * np.exp(
            -np.arange(length) / decay
        )
    return factor


def _maintenance(
    profile: TrafficProfile,
    days: list[date],
    day_index: np.ndarray,
    hour: np.ndarray,
    local: pd.DatetimeIndex,
) -> np.ndarray:
    """Seconds with no traffic at all: scheduled windows every few Sundays, and extra ones."""
    mask = np.zeros(len(hour), dtype=bool)
    for begin, end in profile.extra_maintenance:
        mask |= np.asarray((local >= pd.Timestamp(begin)) & (local < pd.Timestamp(end)))
    if profile.maintenance_every_days <= 0:
        return mask
    first_sunday = (6 - days[0].weekday()) % 7
    offset = np.arange(len(days)) - first_sunday
    on_day = ((offset >= 0) & (offset % profile.maintenance_every_days == 0))[day_index]
    low, high = profile.maintenance_hours
    return mask | (on_day & (hour >= low) & (hour < high))


# Paths of each kind of portal with their share of requests; POST marks form submissions.
_PATHS: dict[str, list[tuple[str, float, str]]] = {
    "pension": [
        ("/", 0.10, "GET"),
        ("/static/app.js", 0.12, "GET"),
        ("/static/app.css", 0.10, "GET"),
        ("/images/emblem.png", 0.08, "GET"),
        ("/login", 0.06, "POST"),
        ("/api/pension/status", 0.22, "GET"),
        ("/api/pension/payments", 0.14, "GET"),
        ("/api/pension/certificate", 0.08, "POST"),
        ("/api/pension/qualification/renew", 0.10, "POST"),
    ],
    "tax": [
        ("/", 0.10, "GET"),
        ("/static/app.js", 0.14, "GET"),
        ("/static/app.css", 0.10, "GET"),
        ("/login", 0.08, "POST"),
        ("/tax/declare", 0.18, "POST"),
        ("/tax/einvoice/submit", 0.22, "POST"),
        ("/api/tax/status", 0.18, "GET"),
    ],
    "card": [
        ("/", 0.14, "GET"),
        ("/static/app.js", 0.16, "GET"),
        ("/static/app.css", 0.10, "GET"),
        ("/card/replace/apply", 0.25, "POST"),
        ("/card/replace/progress", 0.25, "GET"),
        ("/api/card/branches", 0.10, "GET"),
    ],
}
SERVICES = tuple(_PATHS)
"""The portals whose paths the log lines can use."""
_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49",
    "Mozilla/5.0 (Linux; Android 14; V2309A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/118.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
]
_AGENT_SHARE = [0.35, 0.3, 0.2, 0.1, 0.05]
CLIENTS = 20_000


def write_access_log(
    traffic: Traffic,
    path: str | Path,
    seed: int = 0,
    chunk_seconds: int = 6 * 3600,
    fmt: str = "combined",
) -> int:
    """Write one access-log line per request, in time order; ``.gz`` and ``.bz2`` compress.

    ``fmt`` is ``combined`` (with referer and user agent) or ``clf`` (Common Log Format).
    Lines carry the local UTC offset of the profile's zone. Writing goes in chunks of
    ``chunk_seconds`` so memory stays bounded for large logs. Returns the lines written.
    """
    if fmt not in ("combined", "clf"):
        raise ValueError(f"unknown log format {fmt!r}; use combined or clf")
    path = Path(path)
    rng = np.random.default_rng([seed, 1])  # independent of the stream that drew the counts
    paths = _PATHS.get(traffic.profile.service, _PATHS["pension"])
    octets = rng.integers(1, 255, size=(CLIENTS, 4))
    octets[:, 0] = rng.choice([36, 39, 58, 101, 113, 114, 117, 120, 183, 223], size=CLIENTS)
    clients = pl.Series([".".join(map(str, row)) for row in octets])
    start_us = traffic.start_utc.value // 1000
    written = 0
    with _open_for_writing(path) as out:
        for first in range(0, traffic.seconds, chunk_seconds):
            counts = traffic.counts[first : first + chunk_seconds]
            n = int(counts.sum())
            if n == 0:
                continue
            second = np.repeat(np.arange(first, first + len(counts)), counts)
            frame = _request_fields(rng, n, paths, clients)
            stamps = (
                pl.Series(start_us + second.astype(np.int64) * 1_000_000)
                .cast(pl.Datetime("us", "UTC"))
                .dt.convert_time_zone(traffic.profile.tz)
                .dt.strftime("%d/%b/%Y:%H:%M:%S %z")
            )
            fields: list[str | pl.Expr] = [
                "client",
                pl.lit(stamps),
                "method",
                "path",
                "status",
                "size",
            ]
            if fmt == "combined":
                line = pl.format(
                    '{} - - [{}] "{} {} HTTP/1.1" {} {} "{}" "{}"', *fields, "referer", "agent"
                )
            else:
                line = pl.format('{} - - [{}] "{} {} HTTP/1.1" {} {}', *fields)
            frame.select(line).write_csv(out, include_header=False, quote_style="never")
            written += n
    return written


def _request_fields(
    rng: np.random.Generator, n: int, paths: list[tuple[str, float, str]], clients: pl.Series
) -> pl.DataFrame:
    names = [p for p, _, _ in paths]
    shares = np.array([s for _, s, _ in paths])
    methods = [m for _, _, m in paths]
    which = rng.choice(len(paths), size=n, p=shares / shares.sum())
    static = np.array([p.startswith(("/static", "/images")) for p in names])[which]
    roll = rng.random(n)
    status = np.where(static, np.where(roll < 0.15, 304, 200), 200)
    status = np.where(~static & (roll < 0.012), 404, status)
    status = np.where(~static & (roll > 0.995), 503, status)
    size = np.where(status == 304, 0, rng.lognormal(8.0, 1.0, size=n).astype(np.int64))
    return pl.DataFrame(
        {
            "client": clients.gather(rng.integers(0, len(clients), size=n)),
            "method": pl.Series(methods).gather(which),
            "path": pl.Series(names).gather(which),
            "status": status,
            "size": size,
            "referer": np.where(rng.random(n) < 0.6, "https://portal.example.gov.cn/", "-"),
            "agent": pl.Series(_AGENTS).gather(rng.choice(len(_AGENTS), size=n, p=_AGENT_SHARE)),
        }
    )


@contextmanager
def _open_for_writing(path: Path) -> Iterator[IO[bytes]]:
    """The file to write lines to, compressed by its suffix as ingest reads it back.

    The gzip header is written without a time stamp or file name (``gzip -n``): with them,
    the same seed gave other bytes on every run.
    """
    with open(path, "wb") as raw:
        if path.suffix == ".gz":
            # A GzipFile is a binary file object, but typeshed does not declare it IO[bytes].
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0
            ) as out:
                yield out  # type: ignore[misc]
        elif path.suffix == ".bz2":
            with bz2.BZ2File(raw, "wb") as out:
                yield out
        else:
            yield raw
