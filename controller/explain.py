"""A recorded decision told in plain language, for the person paged at 3 a.m.

One sentence: what happened, when, and the cause, then one clause per adjustment (a
stabilisation hold, a step limit, a bound, an override), then what the HPA alone would
have asked for, e.g.::

    scaled 12 → 30 at 09:41 because the p90 forecast for 09:41–09:45 peaks at 2,950 rps,
    each pod serves 100 rps, pods take 3 min to start; HPA alone would have asked for 14.

A decision that was not applied says so in a second sentence, with the reason the
controller recorded (an HPA scaling the same target, a failed write) when there is one.
Pure: the record in, text out, so the account can be tested sentence by sentence.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from controller.decisions import DecisionRecord
from controller.policy import FALLBACK_WORDS


def explain(record: DecisionRecord, tz: str | None = None) -> str:
    """The account of ``record``, with times in ``tz`` (an IANA zone; default UTC)."""
    zone = ZoneInfo(tz) if tz else UTC
    clauses = [f"{_action(record)} at {_clock(record.at, zone)} because {_cause(record, zone)}"]
    clauses += [_adjustment(record, clamp) for clamp in record.clamps]
    if record.hpa_replicas is not None:
        clauses.append(f"HPA alone would have asked for {record.hpa_replicas:,}")
    return printable("; ".join(clauses) + "." + _not_applied(record))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")


def printable(text: str) -> str:
    """``text`` on one line and without terminal controls: a line break or tab reads as a
    space, any other control character as its ``\\x1b`` escape.

    The account quotes words others wrote: an admission webhook's refusal (``ScaleFailed:
    ... denied the request:`` and a list, one violation a line), an override's name. Printed
    as they were, their line breaks split the one sentence over lines a log reader or a
    ``grep`` takes for others, and an escape sequence in them (``ESC[2J``, ``ESC]0;...``)
    was obeyed by the terminal of whoever ran ``surgecast decisions explain``.
    """
    return _CONTROL.sub(
        lambda m: " " if m[0] in _SPACES else m[0].encode("unicode_escape").decode(), text
    )


def _action(r: DecisionRecord) -> str:
    if r.mode == "HPAFloor" and r.replicas < 1:
        # The controller never sets less than 1: the API server refuses an HPA's
        # minReplicas of 0 (without the alpha HPAScaleToZero gate).
        done = (
            f"set the HPA's minReplicas to 1, its lowest, for the {r.replicas:,} chosen "
            f"({r.current_replicas:,} running)"
        )
    elif r.mode == "HPAFloor":
        done = f"set the HPA's minReplicas to {r.replicas:,} ({r.current_replicas:,} running)"
    elif r.replicas != r.current_replicas:
        done = f"scaled {r.current_replicas:,} → {r.replicas:,}"
    else:
        done = f"kept {r.replicas:,} pods"
    return done if r.applied else f"would have {done}"


def applied_status(r: DecisionRecord) -> str:
    """The "applied" column of the list and the page: ``yes``, ``recorded only``
    (ForecastOnly), or ``no`` with the recorded reason (``no (ConflictingHPA)``), so a
    decision an HPA overrode stands out from one a crash interrupted without opening it."""
    if r.applied:
        return "yes"
    if r.mode == "ForecastOnly":
        return "recorded only"
    return f"no ({printable(r.not_applied.partition(':')[0])})" if r.not_applied else "no"


def _not_applied(r: DecisionRecord) -> str:
    if r.applied:
        return ""
    if r.mode == "ForecastOnly":
        return " Recorded only: the scaler is in ForecastOnly mode."
    if r.not_applied:
        # ``Reason: words``, as the controller recorded it (the ScalingActive condition's).
        reason, _, words = r.not_applied.partition(": ")
        return f" Not applied ({reason}): {words.rstrip('.') or 'no details recorded'}."
    return " Not marked applied: the change failed or the controller stopped before making it."


def _cause(r: DecisionRecord, zone: tzinfo) -> str:
    """Why the policy recommended what it did, by the family and detail of its reason."""
    family, _, detail = r.reason.partition("/")
    if family == "FallbackReactive":
        return _fallback(r)
    if detail == "ForecastPeak" and r.forecast_peak is not None:
        cover = f", so it needs {r.predictive:,}" if r.predictive not in (None, r.replicas) else ""
        return (
            f"the {_forecast(r, zone)} peaks at {_load(r, r.forecast_peak)}, each pod serves "
            f"{_load(r, r.capacity_per_replica)}, pods take {_duration(r.startup_delay)} "
            f"to start{cover}"
        )
    if detail == "ReactiveFloor" and r.observed_load is not None:
        peak = f" (peak {_load(r, r.forecast_peak)})" if r.forecast_peak is not None else ""
        return (
            f"the load now, {_load(r, r.observed_load)}, needs {r.reactive_floor:,} pods at "
            f"{_load(r, r.capacity_per_replica)} each, more than the {_forecast(r, zone)} "
            f"asks for{peak}"
        )
    return f"of {r.reason}"


def _fallback(r: DecisionRecord) -> str:
    why = FALLBACK_WORDS.get(r.fallback or "", r.fallback or "reason unknown")
    if r.fallback == "ModelScoreTooLow" and r.backtest_score is not None:
        why += f": {r.backtest_score:.2f}"
    if r.observed_load is None:
        return f"there was no usable forecast ({why}) and no load was observed to react to"
    if r.observed_load < 0:  # the policy takes a negative rate (a broken query) as unknown
        return (
            f"there was no usable forecast ({why}) and the load reading, "
            f"{_load(r, r.observed_load)}, is not a usable request rate, so nothing to react to"
        )
    return (
        f"there was no usable forecast ({why}), so it followed the load now: "
        f"{_load(r, r.observed_load)} needs {r.reactive_floor:,} pods at "
        f"{_load(r, r.capacity_per_replica)} each"
    )


_ADJUSTMENTS = {
    "Hold/WithinTolerance": "the change to {r.recommendation:,} is within the tolerance",
    "Hold/Stabilizing": (
        "the scale-down to {r.recommendation:,} waits for the stabilisation window "
        "and the forecast ahead"
    ),
    "Hold/LoadUnknown": (
        "the scale-down to {r.recommendation:,} waits: the load now is unknown, "
        "and nothing scales down blind"
    ),
    "ScalingLimited/ScaleUpLimit": "limited by the scale-up step (asked for {r.recommendation:,})",
    "ScalingLimited/ScaleDownLimit": (
        "limited by the scale-down step (asked for {r.recommendation:,})"
    ),
    "ReactiveFloor/LoadNeedsMore": "raised to the {r.reactive_floor:,} pods the load now needs",
    "ScalingLimited/TooManyReplicas": "capped at the maximum of {r.max_replicas:,}",
    "ScalingLimited/TooFewReplicas": "raised to the minimum of {r.min_replicas:,}",
}
"""Clause per clamp code the policy emits (``controller.policy.decide``)."""


def _adjustment(r: DecisionRecord, clamp: str) -> str:
    family, _, name = clamp.partition("/")
    if family == "ScheduledOverride":
        return f"scheduled override {name} sets the bounds to {r.min_replicas:,}–{r.max_replicas:,}"
    # The policy raises to the floor only up to the maximum, and a stabilised scale-down
    # may still go part of the way: the clause must not name a count that was not chosen.
    if clamp == "ReactiveFloor/LoadNeedsMore" and r.replicas < r.reactive_floor:
        return (
            f"raised to the maximum of {r.max_replicas:,}, short of the "
            f"{r.reactive_floor:,} pods the load now needs"
        )
    if clamp == "Hold/Stabilizing" and r.replicas < r.current_replicas:
        return (
            f"the scale-down to {r.recommendation:,} goes only part of the way: the "
            "stabilisation window and the forecast ahead hold the rest"
        )
    template = _ADJUSTMENTS.get(clamp)
    return template.format(r=r) if template else f"adjusted by {clamp}"


def _forecast(r: DecisionRecord, zone: tzinfo) -> str:
    """``p90 forecast for 09:41–09:45``."""
    window = f"{_clock(r.window_start, zone)}–{_clock(r.window_end, zone)}"
    return f"p{round(r.quantile * 100, 3):g} forecast for {window}"


def _load(r: DecisionRecord, value: float | None) -> str:
    """``2,950 rps``, ``73.2 rps``, ``0.25 rps`` (see :func:`format_number`)."""
    number = format_number(value) if value is not None else "unknown"
    return f"{number} {r.load_unit}" if r.load_unit else number


def format_number(value: float | None) -> str:
    """A load or a capacity for people; ``-`` when missing.

    One decimal (``2,950.4``, ``73.2``, none when it is whole), and below 100 three
    significant digits (``2.25``, ``0.31``, ``0.04``): with one decimal only, a pod serving
    0.25 rps read "0.2 rps", a load of 0.04 rps "0 rps needs 1 pods", and 0.31 rps at
    0.1 rps a pod "0.3", three pods' worth of a scale to four. The account, the review page
    and ``surgecast decisions list`` all read numbers through this, so they agree.
    """
    if value is None:
        return "-"
    decimals = 1
    if math.isfinite(value) and 0 < abs(value) < 100:
        decimals = min(MOST_DECIMALS, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").removesuffix(".") if "." in text else text


MOST_DECIMALS = 6
"""Decimals at most: a load under a millionth of a request a second reads 0."""


def _duration(delay: timedelta) -> str:
    """``3 min``, ``1.5 min``, ``3 min 20 s`` (not ``3.33333 min``), ``45 s``, ``2 h``."""
    seconds = delay.total_seconds()
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds % 6 == 0:  # whole tenths of a minute
        return f"{seconds / 60:g} min"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes:.0f} min {rest:g} s"


def _clock(moment: datetime, zone: tzinfo) -> str:
    return f"{moment.astimezone(zone):%H:%M}"
