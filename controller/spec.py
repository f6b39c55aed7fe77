"""Read a PredictiveScaler object into typed settings, or say precisely what is wrong with it.

The API server validates against the CRD schema, but a controller must not trust that: the
CRD may be older than the controller, CEL rules (min <= max) are skipped on old clusters,
and some checks (a parseable PromQL step, a sane window) only make sense here. Every
problem is collected, so the user sees all of them in one status condition and Event.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from controller.policy import Override

MODES = ("ForecastOnly", "Scale", "HPAFloor")
MODELS = (
    "auto",
    "seasonal_quantile",
    "gradient_boosting",
    "linear",
    "prophet",
    "seasonal_naive",
    "seasonal_naive_week",
    "last_value",
)
"""The model names a spec may ask for: ``auto`` or a name of :func:`forecaster.models.registry`."""

AUTO_PARAMS = frozenset({"country", "tz"})
"""The ``model.params`` every candidate of ``auto`` takes: the calendar."""
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
MAX_HISTORY = timedelta(days=400)
MAX_HISTORY_POINTS = 576_000
"""Most steps of history a scaler may keep (``retrain.historyWindow / metric.step``), and
of forecast each refit makes (``horizon / metric.step``): 400 days of the default 1-minute
step, so every window allowed at that step stays allowed.
Prometheus's own limit (11,000 points per series per query) is no bound here, since range
queries are chunked under it; memory and fitting time are. Each step is 8 bytes in the
shared cache, a row in every model job's copy and a sample for every candidate model: on
1.2 million points (28 days at 2 s) one seasonal model took 1.5 minutes of CPU and 600 MB,
and 28 days at 1 s is 2.4 million points, 242 requests to fill, for every retrain."""
MAX_OUTLOOK_DAYS = 14
_API_VERSION = re.compile(
    r"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
    r"/[a-z](?:[-a-z0-9]*[a-z0-9])?|v1)$"
)
"""An apiVersion: a group (a DNS subdomain) and a version (a DNS label), or the core
group's only version, v1."""
_KIND = re.compile(r"^[A-Za-z](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?$")
"""A kind, as a CustomResourceDefinition may name one: lower-cased, a DNS label."""
MIN_SYNC = timedelta(seconds=1)
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Cron's weekday numbers: Sunday is 0 (and 7), as in crontab(5) and Kubernetes CronJobs."""
_WEEKDAY_PART = re.compile(
    r"^(?:(?P<star>[*?])|(?P<first>[0-7]|[a-z]{3})(?:-(?P<last>[0-7]|[a-z]{3}))?)"
    r"(?:/(?P<step>\d+))?$",
    re.IGNORECASE,
)


class SpecError(ValueError):
    """The spec cannot be used; ``problems`` lists every reason, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_duration(text: str) -> timedelta:
    """Parse a Kubernetes-style duration such as ``90s``, ``3m``, ``1h30m`` or ``28d``.

    The CRD's pattern bounds no number, so a duration beyond ``timedelta`` is a
    ``ValueError`` like any bad one: the spec reader and the CLIs then report it, where an
    ``OverflowError`` would escape them as a traceback.
    """
    match = _DURATION.match(str(text).strip())
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like 30s, 3m, 1h30m or 28d")
    shown = repr(text) if len(text) <= 40 else f"{text[:40]!r}..."
    too_long = ValueError(f"{shown} is too long a duration (at most {timedelta.max.days}d)")
    # Python reads no integer of over 4,300 digits (its own limit, with a message about
    # sys.set_int_max_str_digits that a user of /ui?since= cannot act on); none over 15
    # fits a timedelta anyway.
    if any(g and len(g) > 15 for g in match.groups()):
        raise too_long
    days, hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    try:
        return timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis
        )
    except OverflowError:
        raise too_long from None


@dataclass(frozen=True)
class OutlookSettings:
    """The days-ahead capacity outlook (``spec.outlook``)."""

    enabled: bool = True
    """On by default: it costs one forecast an hour and warns days before a surge that
    ``maxReplicas`` cannot carry, which neither the policy nor an HPA can fix on the day."""

    days: int = 7
    """How far ahead, in days (1 to 14): a week sees the next deadline or month-end coming."""


@dataclass(frozen=True)
class FeedSettings:
    """The public busy-hours feed (``spec.feed``)."""

    public: bool = False
    """Serve this scaler's feed on the feed port; off unless asked for, since it is public."""

    show_numbers: bool = False
    """Include the forecast load of each hour; off by default, since volumes can be sensitive."""

    time_zone: str = "UTC"
    """The service's IANA time zone, for the feed's dates and the outlook's messages; by
    default the model's ``params.tz``, else UTC."""


@dataclass(frozen=True)
class ScalerConfig:
    """Everything a PredictiveScaler asks for, with CRD defaults applied and units explicit."""

    namespace: str
    name: str
    uid: str
    """``metadata.uid``: unlike the name, it differs for an object deleted and created again
    (whose generation starts at 1 again), so a stored model can tell which object it served."""

    generation: int
    target: dict[str, str]
    min_replicas: int
    max_replicas: int
    mode: str
    prometheus_url: str
    query: str
    step: timedelta
    capacity_per_replica: float
    startup_delay: timedelta | None
    """``None`` means ``auto``: measured from the target's pods."""
    quantile: float
    horizon: timedelta
    model: str
    model_params: dict[str, Any]
    min_backtest_score: float
    retrain_schedule: str
    history_window: timedelta
    max_forecast_age: timedelta
    tolerance: float
    scale_up_max_step: int
    scale_down_max_step: int
    scale_down_stabilization: timedelta
    sync_period: timedelta
    hpa_name: str | None
    overrides: tuple[Override, ...] = field(default_factory=tuple)
    events: tuple[Override, ...] = field(default_factory=tuple)
    """Known-in-advance events for the model: named windows (their bounds are unused)."""
    outlook: OutlookSettings = field(default_factory=OutlookSettings)
    feed: FeedSettings = field(default_factory=FeedSettings)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_scaler(obj: dict[str, Any]) -> ScalerConfig:
    """Build a :class:`ScalerConfig` from a PredictiveScaler, or raise :class:`SpecError`.

    Every field is read through :class:`_Reader`, which checks its JSON type: a field of the
    wrong type is a problem named by its path, never a ``TypeError`` from the code using it.
    """
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise SpecError(["spec: missing or not an object"])
    problems: list[str] = []
    meta = _Reader(obj, problems, prefix="")
    meta.section("metadata")
    namespace = meta.string("metadata.namespace", "")
    name = meta.string("metadata.name", "")
    uid = meta.string("metadata.uid", "")
    generation = meta.integer("metadata.generation", 0, minimum=0)
    reader = _Reader(spec, problems)
    # A section that is not an object is reported once, here; its fields then read as absent.
    for section in ("scaleTargetRef", "metric", "model", "retrain", "behavior", "outlook", "feed"):
        reader.section(section)

    kind = reader.string("scaleTargetRef.kind", "")
    target_name = reader.string("scaleTargetRef.name", "")
    api_version = reader.string("scaleTargetRef.apiVersion", "")
    if "" in (kind, target_name):
        problems.append("spec.scaleTargetRef: needs kind and name")
    if kind and not _KIND.match(kind):
        # A space copied along ("Deployment ") is invisible in the not-found message of
        # every reconcile; no kind of any API group has one.
        problems.append(
            f"spec.scaleTargetRef.kind: {kind!r} is not a kind such as Deployment or Rollout"
        )
    if api_version and not _API_VERSION.match(api_version):
        # Split at its last "/", "apps/v1/" was group "apps/v1" of version "" and "apps"
        # version "apps" of the core group: requests to paths that do not exist, each
        # reported as a target not found.
        problems.append(
            f"spec.scaleTargetRef.apiVersion: {api_version!r} is not a group/version such as"
            " apps/v1 or argoproj.io/v1alpha1 (or v1, the core group)"
        )
    min_replicas = reader.integer("minReplicas", 1, minimum=0)
    max_replicas = reader.integer("maxReplicas", None, minimum=1)
    if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
        problems.append(
            f"spec.minReplicas ({min_replicas}) is greater than spec.maxReplicas ({max_replicas})"
        )
    mode = reader.choice("mode", "ForecastOnly", MODES)
    hpa_name = reader.string("hpaName", "")
    url = reader.string("metric.prometheusUrl", "")
    if url is not None and not re.match(r"^https?://[^\s/$.?#][^\s]*$", url):
        problems.append(f"spec.metric.prometheusUrl: {url!r} is not an http(s) URL")
    query = reader.string("metric.query", "")
    if query is not None and not query.strip():
        problems.append("spec.metric.query: empty")
    step = reader.duration("metric.step", "1m")
    capacity = reader.number("capacityPerReplica", None, minimum=0.0, exclusive=True)
    auto_delay = reader.get("startupDelay", "3m") == "auto"
    startup_delay = None if auto_delay else reader.duration("startupDelay", "3m")
    quantile = reader.number("quantile", 0.9, minimum=0.5, maximum=0.999)
    horizon = reader.duration("horizon", "6h")
    model_name = reader.choice("model.name", "auto", MODELS)
    params = reader.section("model.params")
    if model_name == "auto" and set(params) - AUTO_PARAMS:
        # They were dropped without a word: a max_horizon meant to let the outlook see a
        # deadline coming did nothing, and nothing said so.
        problems.append(
            f"spec.model.params: {', '.join(sorted(set(params) - AUTO_PARAMS))} is for one"
            f" model; with model.name auto only {' and '.join(sorted(AUTO_PARAMS))} apply"
            " (name the model to set it)"
        )
    if params.get("country") is not None:
        # Taken as it was, "cn" or "XX" failed every retrain (ModelTrainingFailed) instead.
        from forecaster.calendar import check_country  # loads holidays: only when asked

        try:
            check_country(str(params["country"]))
        except ValueError as exc:
            problems.append(f"spec.model.params.country: {exc}")
    min_score = reader.number("model.minBacktestScore", 0.5, minimum=0.0, maximum=1.0)
    history = reader.duration("retrain.historyWindow", "28d")
    schedule = reader.string("retrain.schedule", "0 3 * * *")
    if schedule is not None:
        try:
            cron_trigger(schedule)
        except ValueError as exc:
            problems.append(f"spec.retrain.schedule: {schedule!r} is not a cron expression ({exc})")
    for path, span, what in (
        ("retrain.historyWindow", history, "window"),
        # every refit predicts (and builds the event calendar for) horizon / step points: a
        # typo of 9999d was 14 million of them at 1 m, every 30 minutes
        ("horizon", horizon, "horizon"),
    ):
        problems += _too_many_points(reader, path, span, step, what)
    max_age = reader.duration("retrain.maxForecastAge", "26h")
    tolerance = reader.number("behavior.tolerance", 0.1, minimum=0.0, maximum=1.0)
    up_step = reader.integer("behavior.scaleUpMaxStep", 100, minimum=1)
    down_step = reader.integer("behavior.scaleDownMaxStep", 10, minimum=1)
    stabilization = reader.duration("behavior.scaleDownStabilization", "5m", zero=True)
    sync = reader.duration("behavior.syncPeriod", "30s")
    if sync is not None and sync < MIN_SYNC:
        # The CRD's pattern has no ms for it; without that check (an older CRD) a 100ms
        # period would run a cycle, with its Prometheus queries, ten times a second.
        problems.append(
            f"spec.behavior.syncPeriod: {reader.get('behavior.syncPeriod', '')} is shorter than 1s"
        )
        sync = None
    overrides = _windows(reader, "overrides")
    events = _windows(reader, "events")
    enabled = reader.boolean("outlook.enabled", True)
    days = reader.integer("outlook.days", 7, minimum=1)
    if days is not None and days > MAX_OUTLOOK_DAYS:
        problems.append(f"spec.outlook.days: {days} is more than {MAX_OUTLOOK_DAYS}")
    public = reader.boolean("feed.public", False)
    show_numbers = reader.boolean("feed.showNumbers", False)
    model_zone = reader.zone("model.params.tz")
    time_zone = reader.zone("feed.timeZone") or model_zone or "UTC"
    if problems:
        raise SpecError(problems)
    return ScalerConfig(
        namespace=str(namespace),
        name=str(name),
        uid=str(uid),
        generation=int(generation or 0),
        target={"kind": str(kind), "name": str(target_name)}
        | ({"apiVersion": api_version} if api_version else {}),
        min_replicas=int(min_replicas or 0),
        max_replicas=int(max_replicas or 0),
        mode=str(mode),
        prometheus_url=str(url),
        query=str(query).strip(),
        step=step or timedelta(minutes=1),
        capacity_per_replica=float(capacity or 0.0),
        startup_delay=startup_delay,
        quantile=float(quantile or 0.9),
        horizon=horizon or timedelta(hours=6),
        model=str(model_name),
        model_params=dict(params),
        min_backtest_score=float(min_score if min_score is not None else 0.5),
        retrain_schedule=str(schedule),
        history_window=history or timedelta(days=28),
        max_forecast_age=max_age or timedelta(hours=26),
        tolerance=float(tolerance if tolerance is not None else 0.1),
        scale_up_max_step=int(up_step or 100),
        scale_down_max_step=int(down_step or 10),
        scale_down_stabilization=(
            stabilization if stabilization is not None else timedelta(minutes=5)
        ),
        sync_period=sync or timedelta(seconds=30),
        hpa_name=hpa_name or None,
        overrides=overrides,
        events=events,
        outlook=OutlookSettings(enabled=bool(enabled), days=int(days or 7)),
        feed=FeedSettings(
            public=bool(public), show_numbers=bool(show_numbers), time_zone=time_zone
        ),
    )


def cron_trigger(schedule: str) -> BaseTrigger:
    """The trigger of a standard five-field cron expression, in UTC.

    apscheduler 3's ``CronTrigger.from_crontab`` departs from cron (and from Kubernetes
    CronJobs, which users copy schedules from) in two ways. It numbers weekdays from
    Monday = 0: ``0 3 * * 0`` fired on Mondays, ``1-5`` on Tuesday to Saturday, and 7
    (Sunday too, in cron) was refused; so the weekday field is handed to it as names.
    And with both the day of month and the weekday restricted it fires only on days that
    match both, where cron fires on days that match either (``0 3 1 * mon``: the 1st and
    every Monday); so such a schedule is two triggers, the earlier firing winning. A
    schedule that never fires is a ``ValueError``, as one cron cannot read.
    """
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"Wrong number of fields; got {len(fields)}, expected 5")
    minute, hour, day, month, weekday = fields
    days = _weekdays(weekday)

    def trigger(day: str, day_of_week: str) -> CronTrigger:
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=UTC
        )

    made: BaseTrigger = (
        trigger("*" if day == "?" else day, days)
        if day in ("*", "?") or weekday in ("*", "?")
        else OrTrigger([trigger(day, "*"), trigger("*", days)])
    )
    # Cron takes a date that never comes (30 February) and never runs it; for a retrain
    # that is a typo, where the reconciler retrained daily for want of a next firing.
    if made.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError("it never fires: no day of the year matches it")
    return made


def _weekdays(field: str) -> str:
    """A cron weekday field (numbers with Sunday 0 or 7, names, ranges, lists, steps) as
    the comma-separated names apscheduler reads the same way, or ``*``."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        match = _WEEKDAY_PART.match(part)
        if match is None:
            raise ValueError(
                f"day of week {part!r} is not a day (0-7 with Sunday 0 or 7, or sun-sat),"
                " a range of them, or either with a /step"
            )
        first, last, step = match["first"], match["last"], match["step"]
        low = 0 if first is None else _weekday(first)
        # "*" and "N/step" run to Saturday, as in Kubernetes CronJobs; a range ending on
        # Sunday (fri-sun, 5-7 or 5-0) ends on cron's 7.
        high = 6 if last is None and (first is None or step) else low
        if last is not None:
            high = _weekday(last)
            high = 7 if high == 0 and low > 0 else high
        if high < low:
            raise ValueError(f"day of week {part!r} runs backwards")
        every = int(step) if step else 1
        if every < 1:
            raise ValueError(f"day of week {part!r} has a step of 0")
        days.update(day % 7 for day in range(low, high + 1, every))
    return ",".join(WEEKDAYS[day] for day in sorted(days))


def _weekday(text: str) -> int:
    """Cron's number of one weekday, given as 0-7 or a name."""
    if text.isdigit():
        return int(text)
    name = text.lower()
    if name not in WEEKDAYS:
        raise ValueError(f"{text!r} is not a day of the week (sun-sat, or 0-7)")
    return WEEKDAYS.index(name)


def _too_many_points(
    reader: _Reader, field: str, span: timedelta | None, step: timedelta | None, what: str
) -> list[str]:
    """The problem with a ``span`` of ``field`` beyond ``MAX_HISTORY_POINTS`` steps, if any:
    the memory and fitting time it would take grow with its points."""
    given = reader.get(field, "")
    if span is not None and step is not None and span // step > MAX_HISTORY_POINTS:
        return [
            f"spec.{field}: {given} of {reader.get('metric.step', '')} steps (spec.metric.step)"
            f" is {span // step:,} points, more than {MAX_HISTORY_POINTS:,}: make the step"
            f" longer or the {what} shorter (at most {_days(step * MAX_HISTORY_POINTS)}"
            " at this step)"
        ]
    return []


def _days(span: timedelta) -> str:
    """``span`` in whole days (rounded down) or, under a day, hours, as a spec writes it."""
    return f"{span.days}d" if span.days else f"{span.seconds // 3600}h"


def _as_number(value: Any) -> float | None:
    """``value`` as a finite float, else None: a JSON boolean is not a number, and neither
    NaN, an infinity nor an integer too large for a float can bound anything."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


@dataclass
class _Reader:
    """Reads typed fields, appending a problem (and returning None) instead of raising.

    A ``default`` of None makes the field required. A field whose parent is not an object
    reads as absent: :meth:`section` has reported the parent already.
    """

    data: dict[str, Any]
    problems: list[str]
    prefix: str = "spec."

    def get(self, path: str, default: Any) -> Any:
        value: Any = self.data
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return default if value is None else value

    def has(self, path: str) -> bool:
        return self.get(path, None) is not None

    def _bad(self, path: str, value: Any, expected: str) -> None:
        self.problems.append(f"{self.prefix}{path}: {value!r} is not {expected}")

    def _required(self, path: str, value: Any) -> bool:
        if value is None:
            self.problems.append(f"{self.prefix}{path}: required")
        return value is None

    def section(self, path: str) -> dict[str, Any]:
        """An object whose fields all take defaults when it is absent."""
        value = self.get(path, {})
        if not isinstance(value, dict):
            self._bad(path, value, "an object")
            return {}
        return value

    def sequence(self, path: str) -> list[Any]:
        """A list that is empty when absent."""
        value = self.get(path, [])
        if not isinstance(value, list):
            self._bad(path, value, "a list")
            return []
        return value

    def string(self, path: str, default: str | None) -> str | None:
        value = self.get(path, default)
        if self._required(path, value):
            return None
        if not isinstance(value, str):
            self._bad(path, value, "a string")
            return None
        return value

    def integer(self, path: str, default: int | None, minimum: int) -> int | None:
        value = self.get(path, default)
        if self._required(path, value):
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self._bad(path, value, f"an integer >= {minimum}")
            return None
        return value

    def optional_integer(self, path: str, minimum: int) -> int | None:
        """An integer that may be absent (None), as an override's bounds."""
        return self.integer(path, None, minimum) if self.has(path) else None

    def number(
        self,
        path: str,
        default: float | None,
        minimum: float,
        maximum: float | None = None,
        exclusive: bool = False,
    ) -> float | None:
        value = self.get(path, default)
        if self._required(path, value):
            return None
        number = _as_number(value)
        if (
            number is None
            or number < minimum
            or (exclusive and number == minimum)
            or (maximum is not None and number > maximum)
        ):
            bound = f"> {minimum}" if exclusive else f">= {minimum}"
            upper = f" and <= {maximum}" if maximum is not None else ""
            self._bad(path, value, f"a number {bound}{upper}")
            return None
        return number

    def boolean(self, path: str, default: bool) -> bool | None:
        value = self.get(path, default)
        if not isinstance(value, bool):
            self.problems.append(f"{self.prefix}{path}: {value!r} is not true or false")
            return None
        return value

    def choice(self, path: str, default: str, options: tuple[str, ...]) -> str | None:
        value = self.get(path, default)
        if value not in options:
            self._bad(path, value, f"one of {', '.join(options)}")
            return None
        return str(value)

    def duration(self, path: str, default: str, zero: bool = False) -> timedelta | None:
        """A positive duration, or with ``zero`` also none at all (a stabilisation window
        of 0 is the HPA's own way of saying "scale down at once")."""
        text = self.string(path, default)
        if text is None:
            return None
        try:
            value = parse_duration(text)
        except ValueError as exc:
            self.problems.append(f"{self.prefix}{path}: {exc}")
            return None
        if value < timedelta(0) or (value == timedelta(0) and not zero):
            self.problems.append(f"{self.prefix}{path}: must be positive")
            return None
        if value > MAX_HISTORY:
            # Nothing a scaler waits for or looks at spans more than its longest history;
            # and a window of 999999999d put now - window before year 1, an OverflowError
            # in every reconcile instead of an InvalidSpec.
            self.problems.append(f"{self.prefix}{path}: {text} is longer than 400d")
            return None
        return value

    def time(self, path: str) -> datetime | None:
        """A required RFC 3339 time; it needs an offset, or its instant would be a guess."""
        text = self.string(path, None)
        if text is None:
            return None
        try:
            return _utc(text)
        except ValueError:
            self._bad(path, text, "an RFC 3339 time with an offset")
            return None

    def zone(self, path: str) -> str | None:
        """An IANA time zone name, or None when absent or invalid."""
        name = self.string(path, "")
        if not name:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe", a folder
            self.problems.append(f"{self.prefix}{path}: {name!r} is not an IANA time zone")
            return None
        return name


def _windows(reader: _Reader, name: str) -> tuple[Override, ...]:
    """The time windows of ``spec.overrides`` or ``spec.events``, each checked field by field."""
    windows = []
    for n, data in enumerate(reader.sequence(name)):
        where = f"{reader.prefix}{name}[{n}]"
        if not isinstance(data, dict):
            reader.problems.append(f"{where}: {data!r} is not an object")
            continue
        item = _Reader(data, reader.problems, prefix=f"{where}.")
        label = item.string("name", f"{name}-{n}")
        start, end = item.time("start"), item.time("end")
        low = item.optional_integer("minReplicas", minimum=0)
        high = item.optional_integer("maxReplicas", minimum=1)
        if start is None or end is None:
            continue  # reported; so is any other bad field, and the spec is refused
        if end <= start:
            reader.problems.append(f"{where}: end is not after start")
            continue
        if low is not None and high is not None and low > high:
            reader.problems.append(
                f"{where}: minReplicas ({low}) is greater than maxReplicas ({high})"
            )
            continue
        windows.append(Override(str(label), start, end, low, high))
    return tuple(windows)


def _utc(text: Any) -> datetime:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("time without a UTC offset")
    return value
