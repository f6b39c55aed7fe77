"""Read a PredictiveScaler object into typed settings, or say precisely what is wrong with it.

The API server validates against the CRD schema, but a controller must not trust that: the
CRD may be older than the controller, CEL rules (min <= max) are skipped on old clusters,
and some checks (a parseable PromQL step, a sane window) only make sense here. Every
problem is collected, so the user sees all of them in one status condition and Event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
MAX_HISTORY = timedelta(days=400)
MAX_OUTLOOK_DAYS = 14


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
    days, hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    try:
        return timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis
        )
    except OverflowError:
        raise ValueError(
            f"{text!r} is too long a duration (at most {timedelta.max.days}d)"
        ) from None


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


def _section(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """``parent[key]`` when it is an object, else an empty one, whose fields all take defaults."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def parse_scaler(obj: dict[str, Any]) -> ScalerConfig:
    """Build a :class:`ScalerConfig` from a PredictiveScaler, or raise :class:`SpecError`."""
    meta = obj.get("metadata", {})
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise SpecError(["spec: missing or not an object"])
    problems: list[str] = []
    reader = _Reader(spec, problems)

    target = spec.get("scaleTargetRef")
    if not isinstance(target, dict) or not target.get("kind") or not target.get("name"):
        problems.append("spec.scaleTargetRef: needs kind and name")
        target = {"kind": "", "name": ""}
    min_replicas = reader.integer("minReplicas", 1, minimum=0)
    max_replicas = reader.integer("maxReplicas", None, minimum=1)
    if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
        problems.append(
            f"spec.minReplicas ({min_replicas}) is greater than spec.maxReplicas ({max_replicas})"
        )
    mode = reader.choice("mode", "ForecastOnly", MODES)
    metric = _section(spec, "metric")
    url, query = str(metric.get("prometheusUrl", "")), str(metric.get("query", "")).strip()
    if not re.match(r"^https?://[^\s/$.?#][^\s]*$", url):
        problems.append(f"spec.metric.prometheusUrl: {url!r} is not an http(s) URL")
    if not query:
        problems.append("spec.metric.query: empty")
    step = reader.duration("metric.step", metric.get("step", "1m"))
    capacity = reader.number("capacityPerReplica", None, minimum=0.0, exclusive=True)
    raw_delay = spec.get("startupDelay", "3m")
    startup_delay = None if raw_delay == "auto" else reader.duration("startupDelay", raw_delay)
    quantile = reader.number("quantile", 0.9, minimum=0.5, maximum=0.999)
    horizon = reader.duration("horizon", spec.get("horizon", "6h"))
    model = _section(spec, "model")
    model_name = str(model.get("name", "auto"))
    if model_name not in MODELS:
        problems.append(f"spec.model.name: {model_name!r} is not one of {', '.join(MODELS)}")
    retrain = _section(spec, "retrain")
    history = reader.duration("retrain.historyWindow", retrain.get("historyWindow", "28d"))
    schedule = str(retrain.get("schedule", "0 3 * * *"))
    try:
        CronTrigger.from_crontab(schedule, timezone=UTC)
    except ValueError as exc:
        problems.append(f"spec.retrain.schedule: {schedule!r} is not a cron expression ({exc})")
    if history is not None and history > MAX_HISTORY:
        problems.append(
            f"spec.retrain.historyWindow: {retrain.get('historyWindow')} is longer than 400d"
        )
    max_age = reader.duration("retrain.maxForecastAge", retrain.get("maxForecastAge", "26h"))
    behavior = _section(spec, "behavior")
    behave = _Reader(behavior, problems, prefix="spec.behavior.")
    tolerance = behave.number("tolerance", 0.1, minimum=0.0, maximum=1.0)
    up_step = behave.integer("scaleUpMaxStep", 100, minimum=1)
    down_step = behave.integer("scaleDownMaxStep", 10, minimum=1)
    stabilization = behave.duration(
        "scaleDownStabilization", behavior.get("scaleDownStabilization", "5m")
    )
    sync = behave.duration("syncPeriod", behavior.get("syncPeriod", "30s"))
    overrides = _windows(spec.get("overrides", []), "overrides", problems)
    events = _windows(spec.get("events", []), "events", problems)
    enabled = reader.boolean("outlook.enabled", True)
    days = reader.integer("outlook.days", 7, minimum=1)
    if days is not None and days > MAX_OUTLOOK_DAYS:
        problems.append(f"spec.outlook.days: {days} is more than {MAX_OUTLOOK_DAYS}")
    public = reader.boolean("feed.public", False)
    show_numbers = reader.boolean("feed.showNumbers", False)
    params = _section(model, "params")
    time_zone = str(reader._get("feed.timeZone", params.get("tz") or "UTC"))
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"spec.feed.timeZone: {time_zone!r} is not an IANA time zone")
    if problems:
        raise SpecError(problems)
    return ScalerConfig(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        generation=int(meta.get("generation") or 0),
        target={k: str(v) for k, v in target.items()},
        min_replicas=int(min_replicas or 0),
        max_replicas=int(max_replicas or 0),
        mode=str(mode),
        prometheus_url=url,
        query=query,
        step=step or timedelta(minutes=1),
        capacity_per_replica=float(capacity or 0.0),
        startup_delay=startup_delay,
        quantile=float(quantile or 0.9),
        horizon=horizon or timedelta(hours=6),
        model=model_name,
        model_params=dict(model.get("params") or {}),
        min_backtest_score=float(model.get("minBacktestScore", 0.5)),
        retrain_schedule=schedule,
        history_window=history or timedelta(days=28),
        max_forecast_age=max_age or timedelta(hours=26),
        tolerance=float(tolerance if tolerance is not None else 0.1),
        scale_up_max_step=int(up_step or 100),
        scale_down_max_step=int(down_step or 10),
        scale_down_stabilization=stabilization or timedelta(minutes=5),
        sync_period=sync or timedelta(seconds=30),
        hpa_name=str(spec["hpaName"]) if spec.get("hpaName") else None,
        overrides=overrides,
        events=events,
        outlook=OutlookSettings(enabled=bool(enabled), days=int(days or 7)),
        feed=FeedSettings(
            public=bool(public), show_numbers=bool(show_numbers), time_zone=time_zone
        ),
    )


@dataclass
class _Reader:
    """Reads typed fields, appending a problem (and returning None) instead of raising."""

    data: dict[str, Any]
    problems: list[str]
    prefix: str = "spec."

    def _get(self, path: str, default: Any) -> Any:
        value: Any = self.data
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return default if value is None else value

    def integer(self, path: str, default: int | None, minimum: int) -> int | None:
        value = self._get(path, default)
        if value is None:
            self.problems.append(f"{self.prefix}{path}: required")
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problems.append(f"{self.prefix}{path}: {value!r} is not an integer >= {minimum}")
            return None
        return value

    def number(
        self,
        path: str,
        default: float | None,
        minimum: float,
        maximum: float | None = None,
        exclusive: bool = False,
    ) -> float | None:
        value = self._get(path, default)
        if value is None:
            self.problems.append(f"{self.prefix}{path}: required")
            return None
        bad_type = isinstance(value, bool) or not isinstance(value, (int, float))
        if (
            bad_type
            or value < minimum
            or (exclusive and value == minimum)
            or (maximum and value > maximum)
        ):
            bound = f"> {minimum}" if exclusive else f">= {minimum}"
            upper = f" and <= {maximum}" if maximum else ""
            self.problems.append(f"{self.prefix}{path}: {value!r} is not a number {bound}{upper}")
            return None
        return float(value)

    def boolean(self, path: str, default: bool) -> bool | None:
        value = self._get(path, default)
        if not isinstance(value, bool):
            self.problems.append(f"{self.prefix}{path}: {value!r} is not true or false")
            return None
        return value

    def choice(self, path: str, default: str, options: tuple[str, ...]) -> str | None:
        value = self._get(path, default)
        if value not in options:
            self.problems.append(
                f"{self.prefix}{path}: {value!r} is not one of {', '.join(options)}"
            )
            return None
        return str(value)

    def duration(self, path: str, raw: Any) -> timedelta | None:
        try:
            value = parse_duration(str(raw))
        except ValueError as exc:
            self.problems.append(f"{self.prefix}{path}: {exc}")
            return None
        if value <= timedelta(0):
            self.problems.append(f"{self.prefix}{path}: must be positive")
            return None
        return value


def _windows(raw: Any, name: str, problems: list[str]) -> tuple[Override, ...]:
    if not isinstance(raw, list):
        problems.append(f"spec.{name}: not a list")
        return ()
    windows = []
    for n, item in enumerate(raw):
        where = f"spec.{name}[{n}]"
        try:
            start = _utc(item["start"])
            end = _utc(item["end"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{where}: needs start and end as RFC 3339 times")
            continue
        if end <= start:
            problems.append(f"{where}: end is not after start")
            continue
        low, high = item.get("minReplicas"), item.get("maxReplicas")
        if low is not None and high is not None and low > high:
            problems.append(f"{where}: minReplicas ({low}) is greater than maxReplicas ({high})")
            continue
        windows.append(Override(str(item.get("name", f"{name}-{n}")), start, end, low, high))
    return tuple(windows)


def _utc(text: Any) -> datetime:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("time without a UTC offset")
    return value
