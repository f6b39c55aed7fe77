"""The replay, the HPA baseline and the policy on edge input: windows, grids, sync times."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from controller.cli import app
from controller.hpa import HPASettings, HPASimulator
from controller.policy import Forecast, Override, PolicySpec, decide
from controller.replay import ReplaySettings, _Fleet, replay
from controller.report import summary_table, write_report

START = pd.Timestamp("2026-11-02 00:00")
SETTINGS = ReplaySettings(capacity_per_replica=10, startup_delay=timedelta(minutes=2))


def series(values, start=START, freq="1min") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": "s",
            "ds": pd.date_range(start, periods=len(values), freq=freq),
            "y": np.asarray(values, float),
        }
    )


def test_a_window_past_the_data_is_refused_with_the_series_span() -> None:
    # It crashed with an IndexError deep in the predictive run.
    with pytest.raises(ValueError, match="no interval of the series falls between") as caught:
        replay(
            series([10.0] * 30),
            START + timedelta(hours=5),
            SETTINGS,
            end=START + timedelta(hours=6),
        )
    assert "2026-11-02 00:29:00" in str(caught.value)


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    series([10.0] * 30).to_csv(tmp_path / "s.csv", index=False)
    args = ["replay", "--series", str(tmp_path / "s.csv"), "--capacity-per-replica", "10"]
    result = CliRunner().invoke(
        app, [*args, "--start", "2026-11-03", "--end", "2026-11-04", "--policy", "hpa"]
    )
    assert result.exit_code != 0
    assert "no interval of the series falls between" in result.output
    assert isinstance(result.exception, SystemExit)  # not the IndexError it raised before


def test_times_off_the_grid_are_refused_not_read_as_missing() -> None:
    # An off-grid first row shifted the whole grid: every other row read as missing and the
    # replay scored nothing, without a word.
    shifted = series([10.0] * 60)
    shifted.loc[0, "ds"] -= pd.Timedelta(seconds=30)
    with pytest.raises(ValueError, match="1 of the series' 60 times are off its 1min grid"):
        replay(shifted, START + timedelta(minutes=10), SETTINGS, policies=["oracle"])
    # one stray row in the middle was dropped as silently
    stray = series([10.0] * 60)
    stray.loc[30, "ds"] += pd.Timedelta(seconds=20)
    with pytest.raises(ValueError, match="2026-11-02 00:30:20"):
        replay(stray, START + timedelta(minutes=10), SETTINGS, policies=["oracle"])


def test_a_regular_series_with_absent_rows_still_replays() -> None:
    gappy = series([10.0] * 60).drop(index=range(20, 25))
    result = replay(gappy, START + timedelta(minutes=10), SETTINGS, policies=["oracle"])
    assert len(result.decisions) == 50
    assert result.decisions["load"].isna().sum() == 5


def test_the_hpa_scale_up_limit_counts_from_the_start_of_its_15_s_period() -> None:
    # The HPA's sync period and its scale-up policies' 15 s period are separate settings: a
    # controller syncing every 5 s still adds at most max(+100 %, +4 pods) per 15 s.
    hpa = HPASimulator(
        HPASettings(min_replicas=1, max_replicas=1000, capacity_per_replica=10, sync_seconds=5)
    )
    assert hpa.sync(0, current=1, load=7000.0) == 5
    assert hpa.sync(5, current=5, load=7000.0) == 5  # the period started at 1 pod
    assert hpa.sync(10, current=5, load=7000.0) == 5
    assert hpa.sync(15, current=5, load=7000.0) == 10  # a new period, from 5 pods
    assert hpa.sync(30, current=10, load=7000.0) == 20


def test_the_hpa_keeps_the_count_it_finds_for_its_stabilisation_window() -> None:
    """Upstream records the count found at the first sync as a recommendation
    (``recordInitialRecommendation``): an HPA put on a warm workload does not drop it at
    its first quiet sync."""
    hpa = HPASimulator(HPASettings(1, 100, 10.0, target_utilization=0.5))
    assert hpa.sync(0, current=10, load=10.0) == 10
    assert hpa.sync(285, current=10, load=10.0) == 10
    assert hpa.sync(300, current=10, load=10.0) == 2  # the first sync's count has aged out


@pytest.mark.parametrize(
    ("freq", "expected"),
    [
        ("10s", [5, 5, 10, 20, 20, 40]),  # was 5, 10, 20, 40, 80, 160: a sync every 10 s
        ("20s", [5, 10, 40, 80]),  # was 5, 10, 20, 40: a sync every 20 s
        ("40s", [20, 80, 640]),  # was 10, 40, 160: two syncs per 40 s
    ],
)
def test_the_replayed_hpa_syncs_every_15_s_whatever_the_step(freq: str, expected: list) -> None:
    # The HPA syncs at :00, :15, :30 and :45 of every minute; each sync at most doubles the
    # count (1 pod: +4). It sees the surge one interval late, from then on the syncs within
    # each interval set its count. The surge comes after the first lead window, which the
    # replay starts every policy warm for (and the HPA keeps its first count for 300 s).
    step = pd.Timedelta(freq)
    surge = series([10.0] * 30 + [100_000.0] * 12, freq=freq)
    settings = replace(SETTINGS, hpa_target=1.0, max_replicas=100_000)
    run = replay(surge, START + step, settings, policies=["hpa"]).decisions
    seen = run[run["ds"] >= START + 31 * step]
    assert seen["replicas"].tolist()[: len(expected)] == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tz", "Mars/Base"], "--tz 'Mars/Base' is not a time zone like Europe/Berlin"),
        (["--country", "XX"], "--country 'XX' has no holiday calendar"),
        (["--decisions-out", "d.txt"], "--decisions-out d.txt: unsupported extension '.txt'"),
        (["--decisions-out", "nodir/d.csv"], "--decisions-out nodir/d.csv: no such directory"),
        (["--html", "nodir/r.html"], "--html nodir/r.html: no such directory 'nodir'"),
    ],
)
def test_the_cli_refuses_options_it_would_fail_on_after_the_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str], message: str
) -> None:
    # Each was a traceback: in the model's first fit, or after the whole replay had run.
    monkeypatch.chdir(tmp_path)
    series([10.0] * 120).to_csv("s.csv", index=False)
    args = ["replay", "--series", "s.csv", "--capacity-per-replica", "10"]
    result = CliRunner().invoke(app, [*args, "--start", "2026-11-02 01:00", *extra])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message}"), result.stderr


def hourly(values: list[float], start: datetime) -> Forecast:
    times = np.array([np.datetime64(start) + np.timedelta64(i, "h") for i in range(len(values))])
    return Forecast(start, times, np.asarray(values, float), 0.9)


def test_a_forecast_covers_the_window_until_its_last_interval_ends() -> None:
    # 09:41 with a 3 min delay and 30 s syncs: the lead window ends at 09:44:30, inside the
    # 09:00 hour of an hourly forecast whose last interval starts at 09:00. Comparing the
    # window's end with that start fell back to the load an hour before the forecast ran out.
    spec = PolicySpec(
        min_replicas=1,
        max_replicas=50,
        capacity_per_replica=100.0,
        startup_delay=timedelta(minutes=3),
        sync_period=timedelta(seconds=30),
    )
    now = datetime(2026, 11, 20, 9, 41)
    covering = hourly([500.0, 2000.0], datetime(2026, 11, 20, 8))
    d = decide(spec, now, current_replicas=10, observed_load=900.0, forecast=covering)
    assert (d.reason, d.replicas) == ("ScaleUp/ForecastPeak", 20)
    ended = hourly([500.0, 2000.0], datetime(2026, 11, 20, 7))  # covers up to 09:00
    d = decide(spec, now, current_replicas=10, observed_load=900.0, forecast=ended)
    assert d.reason == "FallbackReactive/ForecastDoesNotCoverWindow"
    # a one-point forecast covers its instant only
    single = hourly([2000.0], datetime(2026, 11, 20, 9, 44))
    d = decide(spec, now, current_replicas=10, observed_load=900.0, forecast=single)
    assert d.reason == "FallbackReactive/ForecastDoesNotCoverWindow"


def test_the_report_states_the_interval_and_the_delay_as_simulated(tmp_path: Path) -> None:
    # A pod asked for 90 s before is ready from the interval two minutes on: the report said
    # "ready 1.5 minutes later", and never said how long an interval is.
    settings = replace(SETTINGS, startup_delay=timedelta(seconds=90))
    result = replay(series([10.0] * 30), START + timedelta(minutes=5), settings, ["oracle"])
    page = write_report(result, tmp_path / "r.html", "t").read_text()
    assert "Each pod serves 10 requests per\ninterval (1 min);" in page
    assert "ready 1.5 min later, which the replay rounds up to whole intervals: 2 min;" in page
    quarter = series([10.0] * 30, freq="15s")
    result = replay(quarter, START + timedelta(minutes=1), settings, ["oracle"])
    page = write_report(result, tmp_path / "q.html", "t").read_text()
    assert "interval (15 s); a pod asked for is ready 1.5 min later;" in page


def test_a_decision_on_the_forecast_alone_does_not_say_nothing_changes() -> None:
    # "7 → 20; the p90 forecast ... so 20 cover it; no load was observed, so nothing
    # changes without a forecast": on-call read that the count would not change.
    spec = PolicySpec(1, 50, 100.0, timedelta(minutes=3))
    now = datetime(2026, 11, 20, 9, 41)
    ahead = hourly([2000.0, 2000.0], datetime(2026, 11, 20, 9))
    d = decide(spec, now, current_replicas=7, observed_load=None, forecast=ahead)
    assert d.message.startswith("7 → 20; the p90 forecast")
    assert d.message.endswith("so 20 cover it; no load was observed.")
    d = decide(spec, now, current_replicas=7, observed_load=None, forecast=None)
    assert d.message.endswith("no load was observed, so nothing changes without a forecast.")


def test_a_negative_reading_in_the_level_window_counts_as_missing() -> None:
    # One broken minute (-30,000: a counter reset through deriv()) dragged the nowcast level
    # to its lower bound, halved the forecast and scaled the service down; the floor
    # already takes such a reading as unknown, and so does the nowcast now, like a NaN.
    spec = PolicySpec(1, 50, 100.0, timedelta(minutes=3), level_window=30)
    now = datetime(2026, 11, 20, 9, 41)
    times = np.array([np.datetime64(now) + np.timedelta64(i - 40, "m") for i in range(100)])
    ahead = Forecast(now, times, np.full(100, 1200.0), 0.9, median=np.full(100, 1000.0))
    recent = [1000.0] * 30
    steady = decide(spec, now, 12, 1000.0, ahead, (), recent)
    recent[-5] = -30_000.0
    broken = decide(spec, now, 12, 1000.0, ahead, (), recent)
    recent[-5] = np.nan
    missing = decide(spec, now, 12, 1000.0, ahead, (), recent)
    assert steady.replicas == broken.replicas == missing.replicas == 12
    assert broken.forecast_peak == missing.forecast_peak == 1200.0


def test_an_aware_start_and_end_are_read_as_their_utc_times() -> None:
    # A notebook passing pd.Timestamp(..., tz="UTC") got "Cannot compare tz-naive and
    # tz-aware timestamps"; the CLI converted, the function did not.
    y = series([10.0 * (1 + n // 10) for n in range(120)])
    naive = replay(
        y, START + timedelta(minutes=30), SETTINGS, ["oracle"], end=START + timedelta(hours=1)
    )
    aware = replay(
        y,
        pd.Timestamp("2026-11-02 01:30", tz="Europe/Berlin"),  # 00:30 UTC
        SETTINGS,
        ["oracle"],
        end=pd.Timestamp("2026-11-02 01:00", tz="UTC").to_pydatetime(),
    )
    pd.testing.assert_frame_equal(naive.decisions, aware.decisions)


@pytest.mark.parametrize("policies", [[], ["hpa", "hpa"]])
def test_a_policy_list_must_name_each_policy_once(policies: list[str]) -> None:
    # ["hpa", "hpa"] summed two runs into one row (twice the replica-minutes); [] failed
    # in pandas with "No objects to concatenate".
    with pytest.raises(ValueError, match="name each policy once"):
        replay(series([10.0] * 30), START + timedelta(minutes=5), SETTINGS, policies)


def test_an_empty_series_file_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("unique_id,ds,y\n")
    args = ["replay", "--series", str(tmp_path / "s.csv"), "--capacity-per-replica", "10"]
    result = CliRunner().invoke(app, [*args, "--start", "2026-11-02 01:00"])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 's.csv'} has no rows\n"  # was "no series None"
    result = CliRunner().invoke(app, [*args, "--start", "2026-11-02 01:00", "--id", ""])
    assert result.stderr == f"error: no series '' in {tmp_path / 's.csv'}\n"


def test_an_override_raising_max_applies_a_lead_time_early() -> None:
    # A sale window raises max from 50 to 200 at 09:43; the forecast sees its surge inside
    # the lead window [09:41, 09:44:30). Capped at 50 until 09:43, the pods for the surge
    # were ready only at 09:46, three minutes into the sale. A raised min already applied
    # early for this reason; a lowered max still waits for its window.
    now = datetime(2026, 11, 20, 9, 41)
    sale = Override("sale", now + timedelta(minutes=2), now + timedelta(hours=2), None, 200)
    spec = PolicySpec(2, 50, 100.0, timedelta(minutes=3), timedelta(seconds=30), overrides=(sale,))
    surge = hourly([15_000.0, 15_000.0], datetime(2026, 11, 20, 9))
    d = decide(spec, now, current_replicas=50, observed_load=4000.0, forecast=surge)
    assert (d.replicas, d.max_replicas, d.override) == (150, 200, "sale")
    freeze = replace(sale, name="freeze", max_replicas=10)
    d = decide(replace(spec, overrides=(freeze,)), now, 40, 4000.0, surge)
    assert (d.replicas, d.max_replicas, d.override) == (50, 50, None)


def test_a_window_with_no_known_load_scores_nothing_rather_than_perfect() -> None:
    # A replay of a scrape outage said "0.000 % unserved" for every policy.
    y = series([10.0] * 60 + [np.nan] * 60)
    result = replay(y, START + timedelta(hours=1), SETTINGS, ["hpa", "oracle"])
    summary = result.summary.set_index("policy")
    assert (
        summary[["unserved_share", "unserved_requests", "minutes_over_capacity_share"]]
        .isna()
        .all()
        .all()
    )
    assert summary.loc["oracle", "replica_minutes"] == 60  # the cost is still counted
    table = summary_table(result.summary)
    assert "nan" not in table and "0.000%" not in table


@pytest.mark.timeout(20)
def test_a_fleet_of_millions_of_replicas_replays_in_moments() -> None:
    """One list entry per pod: ten million replicas took a second of counting per interval
    and ``--min-replicas 999999999999`` was a MemoryError. Pods are now kept as runs that
    became ready together."""
    many = 10_000_000
    settings = replace(SETTINGS, min_replicas=many, max_replicas=many + 5)
    load = [many * 10.0] * 100 + [(many + 5) * 10.0] * 20  # the last 5 pods boot for 2 min
    result = replay(series(load), START + timedelta(minutes=60), settings, ["hpa", "oracle"])
    oracle = result.decisions[result.decisions["policy"] == "oracle"]
    assert oracle["replicas"].tolist() == [many] * 38 + [many + 5] * 22
    assert oracle["ready"].tolist() == [many] * 40 + [many + 5] * 20
    assert (result.summary.set_index("policy").loc["oracle", "unserved_requests"]) == 0


@given(
    st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=4),
)
def test_the_fleet_counts_ready_pods_as_one_entry_per_pod_did(desired, delay) -> None:
    """Runs of pods give exactly the counts of the per-pod list they replaced: new pods
    ready ``delay`` steps after they were asked for, the newest removed first."""
    fleet, pods = _Fleet(delay), []
    for step, want in enumerate(desired):
        fleet.set(want, step)
        pods = pods[:want] + [step + delay] * (want - len(pods))
        assert len(fleet) == len(pods)
        assert fleet.ready(step) == sum(at <= step for at in pods)
