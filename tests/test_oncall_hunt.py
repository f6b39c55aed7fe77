"""The on-call path under a demanding reader: times as typed, numbers as configured, the
same answers from every backend."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.decisions import DecisionLog, record_from_decision
from controller.explain import explain, format_number
from controller.policy import Forecast, PolicySpec, decide
from controller.review import review_page, review_route
from tests import pg_server
from tests.test_decisions import SCALER, T0, run_sql, sample, url  # noqa: F401 (a fixture)
from tests.test_decisions_edges import told
from tests.test_review import figure

postgres = pg_server.postgres
"""The session's PostgreSQL server (see tests/pg_server.py)."""

MINUTE = datetime(2026, 11, 20, 9, 41, tzinfo=UTC)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def around_the_minute(tmp_path: Path) -> str:
    """A log with a decision half a minute before 09:41 (10 running) and one half a minute
    into it (50 running)."""
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    with DecisionLog(db) as log:
        log.record_many(
            [
                replace(sample(0), at=MINUTE - timedelta(seconds=30), current_replicas=10),
                replace(sample(0), at=MINUTE + timedelta(seconds=30), current_replicas=50),
            ]
        )
    return db


@pytest.mark.parametrize(
    ("at", "current"),
    [
        ("2026-11-20 09:41:00", 10),
        ("2026-11-20T09:41:00Z", 10),
        ("2026-11-20 09:41:00.000", 10),
        ("20261120T094100", 10),
        ("2026-11-20 09:41", 50),
        ("2026-11-20T09:41+00:00", 50),
    ],
)
def test_explain_at_a_time_typed_with_zero_seconds_is_that_instant(
    around_the_minute: str, at: str, current: int
) -> None:
    # An alert's "09:41:00" was read to the end of the minute, because only a non-zero
    # second told a time with seconds: the decision made at 09:41:30, after the moment
    # asked about, was explained as the one in force.
    code, out = cli("decisions", "explain", "prod/portal", "--at", at, "--db", around_the_minute)
    assert code == 0, out
    assert out.startswith(f"would have scaled {current} → 30"), out


SMALL = PolicySpec(
    min_replicas=2,
    max_replicas=50,
    capacity_per_replica=0.25,
    startup_delay=timedelta(seconds=200),
)
"""An inference service: a quarter of a request a second per pod, 200 s to start."""


def test_the_account_gives_a_small_capacity_and_load_as_they_are() -> None:
    # With one decimal, a pod serving 0.25 rps "served 0.2 rps" (2.1 / 0.2 makes 11 pods,
    # not the 9 chosen), a load of 0.04 rps was "0 rps needs 1 pods", and a start-up of
    # 200 s took "3.33333 min".
    assert told(SMALL, 2, 0.9, 2.1) == (
        "scaled 2 → 9 at 09:41 because the p90 forecast for 09:41–09:44 peaks at 2.1 rps, "
        "each pod serves 0.25 rps, pods take 3 min 20 s to start."
    )
    assert told(SMALL, 10, 0.04, None) == (
        "scaled 10 → 2 at 09:41 because there was no usable forecast (none yet), so it "
        "followed the load now: 0.04 rps needs 1 pods at 0.25 rps each; raised to the "
        "minimum of 2."
    )
    assert told(replace(SMALL, capacity_per_replica=2.25), 2, 7.31, 7.31).startswith(
        "scaled 2 → 4 at 09:41 because the p90 forecast for 09:41–09:44 peaks at 7.31 rps, "
        "each pod serves 2.25 rps"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2_950.4, "2,950.4"),
        (1_180.0, "1,180"),
        (73.25, "73.2"),
        (99.96, "100"),
        (2.25, "2.25"),
        (0.5, "0.5"),
        (0.31, "0.31"),
        (0.04, "0.04"),
        (1e-9, "0"),
        (0.0, "0"),
        (-5.0, "-5"),
        (None, "-"),
        (float("nan"), "nan"),
    ],
)
def test_numbers_keep_three_significant_digits_below_100(value: float | None, text: str) -> None:
    assert format_number(value) == text


def test_the_review_table_shows_a_small_capacity_as_it_is() -> None:
    record = replace(
        sample(0), capacity_per_replica=0.25, observed_load=0.04, forecast_peak=2.1, replicas=9
    )
    page = review_page(["prod/portal"], {"prod/portal": [record]}, since=T0)
    row = page.split('<tr id="decision-0-0"')[1].split("</tr>")[0]
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert cells == ["0.04", "2.1", "2.25", "14"]


@pytest.mark.parametrize(
    ("since", "until", "shown"),
    [
        ("1h", "2h", None),
        ("2026-11-21", "2026-11-19", "'2026-11-19' (2026-11-19 00:00 UTC)"),
        ("2026-11-20 09:41", "2026-11-20 09:41", "'2026-11-20 09:41' (2026-11-20 09:41 UTC)"),
    ],
)
def test_a_window_that_ends_before_it_starts_is_refused(
    around_the_minute: str, tmp_path: Path, since: str, until: str, shown: str | None
) -> None:
    # --since 1h --until 2h (swapped) read "no decisions in that window; ... widen
    # --since", and surgecast review wrote a page "from 2026-11-21 to 2026-11-19".
    page = tmp_path / "review.html"
    window = ("--since", since, "--until", until, "--db", around_the_minute)
    for args in (
        ("decisions", "list", "prod/portal", *window),
        ("review", *window, "-o", str(page)),
    ):
        code, out = cli(*args)
        assert code == 2, out
        assert out.startswith(f"error: --until {shown or repr(until)}"), out
        assert f" is not after --since {since!r} (" in out, out
        assert out.endswith("): the window holds no time\n"), out
    assert not page.exists()


def test_a_reason_typed_in_another_case_finds_the_same_decisions_on_both_backends(
    url: str,  # noqa: F811
) -> None:
    # SQLite's LIKE ignores case and PostgreSQL's does not: --reason scaleup listed every
    # ScaleUp decision from SQLite and none from PostgreSQL (and the whole code, compared
    # with =, matched in neither).
    with DecisionLog(url) as log:
        log.record_many(
            [sample(0), sample(1, reason="Hold/ForecastPeak"), sample(2, reason="Scale/Other")]
        )
        for typed in ("ScaleUp", "scaleup", "SCALEUP", "scaleup/forecastpeak"):
            assert [r.at for r in log.list(SCALER, reason=typed)] == [T0], typed
        assert log.list(SCALER, reason="Scale")[0].reason == "Scale/Other"
        assert log.list(SCALER, reason="scale%") == []


def test_the_chart_does_not_bridge_a_gap_in_the_decisions_or_the_forecast() -> None:
    # Plotly joins consecutive points: two hours with the controller down were drawn as a
    # straight line of load, forecast and capacity from 09:05 to 11:06, as if observed, and
    # the forecast's fill (tozeroy, which fills across gaps) covered the hours without a
    # usable forecast as if the last one still held.
    records = [sample(n) for n in range(6)] + [sample(n) for n in range(126, 130)]
    data = figure(review_page([SCALER], {SCALER: records}, since=T0))["data"]
    lines, markers = [data[0], *data[2:5]], data[5]
    for trace in lines:
        assert len(trace["x"]) == len(trace["y"]) == len(records) + 1, trace["name"]
        assert trace["x"][6] == "2026-11-20T09:06:00+00:00"  # when the next was due
        assert trace["y"][6] is None and None not in trace["y"][:6] + trace["y"][7:]
    assert lines[2]["customdata"][6] is None
    assert markers["x"] == [x for n, x in enumerate(lines[0]["x"]) if n != 6]
    area = data[1]
    assert area["fill"] == "toself" and area["legendgroup"] == data[0]["legendgroup"]
    assert area["y"] == [0, *lines[0]["y"][:6], 0, None, 0, *lines[0]["y"][7:], 0, None]
    # Decisions without a usable forecast between two with one: two shapes, none across.
    fallback = dict(reason="FallbackReactive/ForecastStale", forecast_peak=None, predictive=None)
    mixed = [sample(n, **(fallback if n in (2, 3) else {})) for n in range(6)]  # type: ignore[arg-type]
    area = figure(review_page([SCALER], {SCALER: mixed}, since=T0))["data"][1]
    minute = [f"2026-11-20T09:0{n}:00+00:00" for n in range(6)]
    assert area["x"] == [minute[0], *minute[:2], minute[1], minute[1]] + [
        minute[4],
        *minute[4:],
        minute[5],
        minute[5],
    ]
    # A steady log, and one with a short hiccup, are drawn unbroken.
    hiccup = [sample(n) for n in (0, 1, 2, 3, 5, 6, 7)]
    for steady in ([sample(n) for n in range(10)], hiccup, [sample(0), sample(90)]):
        data = figure(review_page([SCALER], {SCALER: steady}, since=T0))["data"]
        for trace in [data[0], *data[2:5]]:
            assert len(trace["x"]) == len(steady) and None not in trace["y"]
        assert data[1]["y"].count(None) == 1


def test_explain_after_a_silence_says_no_later_decision_was_made(around_the_minute: str) -> None:
    # Asked about a time days after the controller stopped, explain told the last decision
    # before the silence ("scaled 50 → 30 at 09:41") as if it had been made for that time;
    # only the date on the line below it told otherwise.
    code, out = cli(
        "decisions", "explain", "prod/portal", "--at", "2026-11-22 12:15", "--db", around_the_minute
    )
    assert code == 0, out
    account, decision, silence = out.splitlines()
    assert account.startswith("would have scaled 50 → 30 at 09:41 because")
    assert decision.startswith("decision 2, 2026-11-20 09:41 UTC: ")
    assert silence == (
        "no later decision was recorded up to 2026-11-22 12:15 UTC, 2 d 2 h on: the "
        "controller was not deciding for prod/portal in between (stopped or not leading; or "
        "the scaler invalid or deleted, or its target gone or scaled to 0 by hand)"
    )
    # Within the decision's lead window (3.5 min here) it is the one in force: no note.
    for at in ("2026-11-20 09:42", "2026-11-20 09:44:59", "2026-11-20 09:41"):
        code, out = cli(
            "decisions", "explain", "prod/portal", "--at", at, "--db", around_the_minute
        )
        assert code == 0 and len(out.splitlines()) == 2, (at, out)
    code, out = cli(
        "decisions", "explain", "prod/portal", "--at", "2026-11-20 10:00", "--db", around_the_minute
    )
    assert out.splitlines()[2].startswith(
        "no later decision was recorded up to 2026-11-20 10:00 UTC, 18 min on"
    )


def test_the_chart_hover_writes_numbers_as_the_table_does() -> None:
    # The hover had plotly's own ",.1f": a load of 0.04 rps read "load 0.0 rps" next to a
    # table saying 0.04.
    records = [
        sample(n, observed_load=0.04, capacity_per_replica=0.25, forecast_peak=2.1)  # type: ignore[arg-type]
        for n in range(3)
    ]
    forecast, _area, load, capacity = figure(review_page([SCALER], {SCALER: records}, since=T0))[
        "data"
    ][:4]
    assert forecast["text"] == ["2.1"] * 3 and "%{text} rps" in forecast["hovertemplate"]
    assert load["text"] == ["0.04"] * 3 and "%{text} rps" in load["hovertemplate"]
    assert capacity["text"] == ["7.5", "7.75", "8"]
    assert "%{text} rps (%{customdata} pods)" in capacity["hovertemplate"]


def test_a_scaler_the_log_never_saw_is_not_said_to_be_quiet_in_the_window(
    around_the_minute: str,
) -> None:
    # /ui?scaler=prod/portl (a typo) said "No decisions of prod/portl in this window.", as
    # if a wider window would show some.
    with DecisionLog(around_the_minute, create=False) as log:
        route = review_route(log, clock=lambda: MINUTE + timedelta(hours=12))
        for query, says in (
            ("scaler=prod/portl", "The decision log has no decisions of prod/portl at all."),
            ("scaler=prod/portal&since=1h", "No decisions of prod/portal in this window."),
        ):
            status, _, body = route(f"/ui?{query}")
            assert status == 200 and says in body.decode(), query
        assert (
            "<li>prod/portal (not on this page)</li>" in route("/ui?scaler=prod/portl")[2].decode()
        )


def test_errors_never_print_the_database_password(postgres: pg_server.PgServer) -> None:
    # Every error of _open printed --db as given: with SURGECAST_DECISION_DB holding
    # postgresql+psycopg://oncall:PASSWORD@..., the password went to the terminal (and to
    # whatever ticket or CI log the line was pasted into), after a SQLAlchemy traceback
    # summary of three lines.
    def with_password(database: str) -> str:
        return database.replace(f"//{postgres.user}@", f"//{postgres.user}:s3cret@")

    bare = postgres.new_database()  # trust authentication: any password is taken
    empty = postgres.new_database()
    DecisionLog(empty).close()
    filled = postgres.new_database()
    with DecisionLog(filled) as log:
        log.record(sample(0))
    unreachable = with_password(f"postgresql+psycopg://{postgres.user}@127.0.0.1:1/surgecast")
    for database, says in (
        (bare, "(it has no decisions table)"),
        (empty, "is empty"),
        (filled, "; it has prod/portal"),
        (unreachable, "Connection refused"),
    ):
        code, out = cli("decisions", "list", "prod/other", "--db", with_password(database))
        assert code == 2 and says in out, out
        assert "s3cret" not in out and f"{postgres.user}:***@" in out, out
        assert len(out.splitlines()) == 1, out


def test_an_unknown_scaler_in_a_fleets_log_gets_a_short_error(tmp_path: Path) -> None:
    # The error named every scaler in the log: with a fleet's 300 it was one line of 5,000
    # characters, the name on-call meant somewhere in it.
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    names = [f"team{n:03d}/api" for n in range(300)] + ["prod/portal", "prod/search"]
    with DecisionLog(db) as log:
        log.record_many([sample(0, scaler=name) for name in names])
    for typed, says in (
        ("prod/portl", "did you mean prod/portal? (it has 302 scalers)"),
        ("prod/checkout", "it has 302 scalers, 2 in prod: prod/portal, prod/search"),
        ("qa/api", "it has 302 scalers, none in qa: prod/portal, prod/search, team000/api, "),
    ):
        code, out = cli("decisions", "explain", typed, "--at", "2026-11-20 09:41", "--db", db)
        assert code == 2, out
        assert out.startswith(f"error: no decisions of {typed} in {db}; {says}"), out
        assert len(out) < 300, out


def test_list_tells_two_decisions_of_one_minute_apart(tmp_path: Path) -> None:
    # At the default 30 s sync every minute holds two decisions, and the list showed both
    # as "09:41": explain --at 09:41 reached the second, and nothing said how to reach the
    # first.
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    with DecisionLog(db) as log:
        log.record_many(
            [
                replace(sample(0), at=MINUTE + timedelta(seconds=5), current_replicas=12),
                replace(sample(0), at=MINUTE + timedelta(seconds=35), current_replicas=30),
            ]
        )
    code, out = cli("decisions", "list", "prod/portal", "--since", "2026-11-20", "--db", db)
    assert code == 0, out
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["2026-11-20", "09:41:05", "12"],
        ["2026-11-20", "09:41:35", "30"],
    ]
    code, out = cli(
        "decisions", "explain", "prod/portal", "--at", "2026-11-20 09:41:05", "--db", db
    )
    assert out.startswith("would have scaled 12 → 30 at 09:41"), out


def test_an_hpa_floor_of_zero_is_told_as_the_one_the_controller_set() -> None:
    # With minReplicas 0 and no load at night, HPAFloor decides 0, and the controller sets
    # the HPA's minReplicas to 1 (the API server refuses 0); the account said "set the
    # HPA's minReplicas to 0".
    night = replace(SMALL, min_replicas=0)
    times = np.array(
        [np.datetime64((MINUTE + timedelta(minutes=m)).replace(tzinfo=None)) for m in range(-5, 30)]
    )
    forecast = Forecast(MINUTE, times, np.zeros(len(times)), 0.9, model_version="m1")
    decision = decide(night, MINUTE, 1, 0.0, forecast)
    record = record_from_decision(
        decision,
        scaler="prod/infer",
        target="Deployment/infer",
        mode="HPAFloor",
        ready_replicas=1,
        spec=night,
        forecast=forecast,
        hpa_replicas=None,
        at=MINUTE,
    )
    assert record.replicas == 0
    assert explain(replace(record, applied=True)).startswith(
        "set the HPA's minReplicas to 1, its lowest, for the 0 chosen (1 running) at 09:41 "
        "because the p90 forecast for 09:41–09:44 peaks at 0 rps"
    )
    assert explain(replace(record, replicas=3, applied=True)).startswith(
        "set the HPA's minReplicas to 3 (1 running) at 09:41"
    )


def test_a_log_missing_a_column_is_refused_once_and_clearly(url: str) -> None:  # noqa: F811
    # create_all leaves an existing table alone, so a table without a column opened fine
    # and every read then failed with a SQLAlchemy traceback quoting the SELECT.
    with DecisionLog(url) as log:
        log.record(sample(0))
    run_sql(url, "ALTER TABLE decisions DROP COLUMN ready_replicas")
    with pytest.raises(RuntimeError, match="lacks the columns ready_replicas: it was not made"):
        DecisionLog(url, create=False)
    code, out = cli("decisions", "list", SCALER, "--since", "2026-11-20", "--db", url)
    assert code == 2 and len(out.splitlines()) == 1, out
    assert out.endswith(
        "the decision log's table lacks the columns ready_replicas: it was not made by "
        "surgecast (schema version 1)\n"
    )


@pytest.mark.parametrize(
    "db",
    [
        "postgresql+psycopg://oncall:s3cret@db:notaport/surgecast",
        "postgresql+psycopg://oncall@127.0.0.1:1/surgecast?password=s3cret",
    ],
)
def test_a_database_url_is_never_shown_with_its_password(db: str) -> None:
    # A port that is no number made make_url raise ValueError: a traceback whose last line
    # held the whole URL; a password given as libpq's ?password= was printed as typed.
    code, out = cli("decisions", "list", "prod/portal", "--db", db)
    assert code == 2 and out.startswith("error: ") and out.count("\n") == 1, out
    assert "s3cret" not in out and "***" in out
