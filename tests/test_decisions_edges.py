"""Edge cases of the decision log, its account (explain) and the pages that read it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from controller import decisions
from controller.cli import app
from controller.decisions import DecisionLog, record_from_decision
from controller.explain import explain
from controller.policy import Forecast, PolicySpec, Recommendation, decide
from controller.replay import ReplayResult, ReplaySettings
from controller.report import summary_table, write_report
from controller.review import render_review
from tests import pg_server
from tests.test_decisions import T0, sample, url  # noqa: F401 (a fixture)

postgres = pg_server.postgres

NOW = datetime(2026, 11, 20, 9, 41, tzinfo=UTC)
SPEC = PolicySpec(
    min_replicas=2, max_replicas=50, capacity_per_replica=100, startup_delay=timedelta(minutes=3)
)


def test_a_negative_load_reading_is_not_told_as_the_load_followed() -> None:
    # The policy takes a negative rate (a broken query) as unknown and keeps the count; the
    # account said it "followed the load now: -5 rps needs 0 pods".
    decision = decide(SPEC, NOW, 10, -5.0, None)
    record = record_from_decision(
        decision,
        scaler="prod/portal",
        target="Deployment/portal",
        mode="Scale",
        ready_replicas=10,
        spec=SPEC,
        forecast=None,
        hpa_replicas=None,
        at=NOW,
    )
    assert decision.replicas == 10
    assert explain(record) == (
        "would have kept 10 pods at 09:41 because there was no usable forecast (none yet) "
        "and the load reading, -5 rps, is not a usable request rate, so nothing to react to. "
        "Not marked applied: the change failed or the controller stopped before making it."
    )


@pytest.fixture
def created_meanwhile(url: str) -> Iterator[list[str]]:  # noqa: F811
    """Another process creates the whole schema of ``url`` just after this one found the
    tables missing and before it creates them: the race of two controllers starting."""
    opened: list[str] = []

    def other_process_first(target: Any, connection: Any, **kw: Any) -> None:
        if not opened:
            opened.append("other")
            DecisionLog(url).close()

    sa.event.listen(decisions._metadata, "before_create", other_process_first)
    try:
        yield opened
    finally:
        sa.event.remove(decisions._metadata, "before_create", other_process_first)


def test_opening_a_new_log_at_the_same_time_as_another_process(
    url: str,  # noqa: F811
    created_meanwhile: list[str],
) -> None:
    # The slower of the two failed on the other's table ("already exists"), and the
    # controller then exited with "cannot open the decision log".
    with DecisionLog(url) as log:
        log.record(sample(0))
        assert [r.current_replicas for r in log.list("prod/portal")] == [10]
    assert created_meanwhile == ["other"]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM schema_version")).scalars().all() == [1]
    engine.dispose()


FALL_BACK = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
"""New York's clocks go back from 02:00 EDT to 01:00 EST: wall times 01:00-01:59 come twice."""


@pytest.fixture
def around_fall_back(tmp_path: Path) -> str:
    """A SQLite log of one decision every 10 minutes from 00:50 EDT to 02:10 EST; the
    current replica count is the minutes since the first."""
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    first = FALL_BACK - timedelta(minutes=70)
    with DecisionLog(db) as log:
        log.record_many(
            [
                replace(sample(0), at=first + timedelta(minutes=m), current_replicas=m)
                for m in range(0, 150, 10)
            ]
        )
    return db


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_explain_at_a_wall_time_that_came_twice_asks_which(around_fall_back: str) -> None:
    # 01:30 New York time is 05:30 and 06:30 UTC; it explained the first without a word.
    new_york = ("--tz", "America/New_York", "--db", around_fall_back)
    code, out = cli("decisions", "explain", "prod/portal", "--at", "2026-11-01 01:30", *new_york)
    assert code == 2
    assert out == (
        "error: --at '2026-11-01 01:30' happened twice in America/New_York, clocks went back: "
        "add its UTC offset, 2026-11-01 01:30-04:00 or 2026-11-01 01:30-05:00\n"
    )
    for offset, minutes in (("-04:00", 40), ("-05:00", 100)):
        code, out = cli(
            "decisions", "explain", "prod/portal", "--at", f"2026-11-01 01:30{offset}", *new_york
        )
        assert code == 0, out
        assert f"scaled {minutes} → " in out
        assert f", 2026-11-01 01:30 {offset} America/New_York: ScaleUp" in out


def test_a_wall_time_clocks_skipped_is_refused(around_fall_back: str) -> None:
    code, out = cli(
        "decisions", "list", "prod/portal", "--since", "2026-03-08 02:30",
        "--tz", "America/New_York", "--db", around_fall_back,
    )  # fmt: skip
    assert code == 2
    assert out == (
        "error: --since '2026-03-08 02:30' did not happen in America/New_York: clocks went "
        "forward past it\n"
    )


def test_list_tells_the_repeated_hour_apart(around_fall_back: str) -> None:
    code, out = cli(
        "decisions", "list", "prod/portal", "--since", "2026-11-01 00:00",
        "--tz", "America/New_York", "--db", around_fall_back,
    )  # fmt: skip
    assert code == 0, out
    times = [re.match(r"\s*(\S+ \S+( [+-]\d\d:\d\d)?)", line)[1] for line in out.splitlines()[1:]]
    assert times == [
        "2026-11-01 00:50:00",
        *(f"2026-11-01 01:{m}0:00 -04:00" for m in range(6)),
        *(f"2026-11-01 01:{m}0:00 -05:00" for m in range(6)),
        "2026-11-01 02:00:00",
        "2026-11-01 02:10:00",
    ]


def test_an_empty_list_points_the_right_way(around_fall_back: str) -> None:
    # With --reason or --until, "the newest is from ...: widen --since" named a decision
    # inside the window, or after it, and gave advice that could not help.
    db = ("--db", around_fall_back)
    window = ("--since", "2026-11-01 03:00", "--until", "2026-11-01 04:00")
    assert cli("decisions", "list", "prod/portal", *window, *db) == (
        0,
        "no decisions of prod/portal in that window; the newest is from "
        "2026-11-01 07:10 UTC, after --until\n",
    )
    late = ("--since", "2026-11-01 08:00")
    assert cli("decisions", "list", "prod/portal", *late, *db) == (
        0,
        "no decisions of prod/portal in that window; the newest is from "
        "2026-11-01 07:10 UTC: widen --since\n",
    )
    everything = ("--since", "2026-11-01 00:00")
    assert cli("decisions", "list", "prod/portal", *everything, "--reason", "ScaleDown", *db) == (
        0,
        "no ScaleDown decisions of prod/portal in the log\n",
    )


LONGEST_SCALER = f"{'n' * 63}/{'p' * 253}"
"""A namespace of 63 characters and a name of 253, the most Kubernetes allows."""


def test_the_longest_kubernetes_names_are_logged(url: str) -> None:  # noqa: F811
    # The scaler column was VARCHAR(253): PostgreSQL refused every decision of a scaler
    # whose NAMESPACE/NAME was longer, and SQLite took them.
    long = sample(0, scaler=LONGEST_SCALER, target=f"Deployment/{'p' * 253}")
    with DecisionLog(url) as log:
        log.record(long)
        assert log.list(LONGEST_SCALER) == [replace(long, id=1)]


def test_an_older_postgresql_log_is_widened_on_open(postgres: pg_server.PgServer) -> None:
    old = postgres.new_database()
    DecisionLog(old).close()
    engine = sa.create_engine(old)
    with engine.begin() as conn:  # as the first surgecast created it
        for name, length in (("scaler", 253), ("target", 300), ("reason", 200)):
            conn.execute(
                sa.text(f"ALTER TABLE decisions ALTER COLUMN {name} TYPE VARCHAR({length})")
            )
    with DecisionLog(old) as log:
        log.record(sample(0))
    with DecisionLog(old) as log:
        log.record(sample(1, scaler=LONGEST_SCALER))
        assert [r.current_replicas for r in log.list("prod/portal")] == [10]
        assert [r.current_replicas for r in log.list(LONGEST_SCALER)] == [11]
    with engine.connect() as conn:
        types = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns("decisions")}
    engine.dispose()
    assert all(getattr(types[name], "length", None) is None for name in types)


def older_log_for_role(
    postgres: pg_server.PgServer, change: str, kind: str, *grants: str
) -> tuple[str, str]:
    """A PostgreSQL log with one decision, then ``change``d as an older version left it,
    and the URLs of its owner and of a new role given only ``grants`` (``{role}`` in them
    names it)."""
    old = postgres.new_database()
    with DecisionLog(old) as log:
        log.record(sample(0))
    engine = sa.create_engine(old)
    role = f"{kind}_{old.rsplit('/', 1)[1]}"
    with engine.begin() as conn:
        conn.execute(sa.text(change))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        for grant in grants:
            conn.execute(sa.text(grant.format(role=role)))
    engine.dispose()
    return old, old.replace(f"//{postgres.user}@", f"//{role}@")


def test_a_reader_that_may_not_alter_still_reads_an_older_log(
    postgres: pg_server.PgServer,
) -> None:
    _, as_reader = older_log_for_role(
        postgres,
        "ALTER TABLE decisions ALTER COLUMN scaler TYPE VARCHAR(253)",
        "reader",
        "GRANT SELECT ON decisions, schema_version TO {role}",
    )
    with DecisionLog(as_reader) as log:
        assert [r.current_replicas for r in log.list("prod/portal")] == [10]


def test_a_page_of_every_scaler_is_bounded_in_all(tmp_path: Path) -> None:
    # The cap was per scaler: a page of every scaler in a fleet held the cap times the
    # number of scalers, all rendered in the controller's memory (~15 KB a decision).
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    counts = {"prod/quiet": 2, "prod/busy": 30, "prod/busier": 40}
    with DecisionLog(db) as log:
        for name, count in counts.items():
            log.record_many([sample(n, scaler=name) for n in range(count)])
        assert log.counts(since=T0) == counts
        assert log.counts(since=T0 + timedelta(minutes=35)) == {"prod/busier": 5}
        text = render_review(log, since=T0, limit=20)
        alone = render_review(log, since=T0, scaler="prod/busy", limit=20)
    shown = [int(n.replace(",", "")) for n in re.findall(r"\((\d[\d,]*) decisions?\)", text)]
    assert shown == [9, 9, 2]  # the quiet one shows all, the others share the rest
    assert "Only the newest 9 of 40 are shown: show this scaler alone or narrow" in text
    assert "Only the newest 9 of 30 are shown" in text
    assert text.count("Only the newest") == 2
    assert "Only the newest 20 of 30 are shown: narrow the window." in alone


def test_a_window_holding_exactly_the_limit_is_not_called_cut(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    with DecisionLog(db) as log:
        log.record_many([sample(n) for n in range(5)])
        assert "Only the newest" not in render_review(log, since=T0, limit=5)


def test_list_says_it_was_cut_short_only_when_it_was(around_fall_back: str) -> None:
    window = ("--since", "2026-11-01 00:00", "--db", around_fall_back, "--json")
    exact = CliRunner().invoke(app, ["decisions", "list", "prod/portal", *window, "--limit", "15"])
    assert exact.exit_code == 0 and len(json.loads(exact.stdout)) == 15
    assert "showing the newest" not in exact.stderr
    cut = CliRunner().invoke(app, ["decisions", "list", "prod/portal", *window, "--limit", "14"])
    assert [r["current_replicas"] for r in json.loads(cut.stdout)] == list(range(10, 150, 10))
    assert "showing the newest 14: narrow --since or raise --limit" in cut.stderr


def replayed(policies: list[str], quantile: float) -> ReplayResult:
    """A replay's result by hand: an hour of flat load, each policy with 2 pods."""
    ds = pd.date_range("2026-11-20 09:00", periods=60, freq="1min")
    runs = pd.concat(
        pd.DataFrame(
            {"ds": ds, "policy": name, "load": 15.0, "replicas": 2, "capacity": 20.0}
            | {"unserved": 0.0}
        )
        for name in policies
    )
    oracle = 120.0 if "oracle" in policies else np.nan
    summary = pd.DataFrame(
        {
            "policy": policies,
            "unserved_share": 0.0,
            "minutes_over_capacity_share": 0.0,
            "replica_minutes": 120.0,
            "cost_vs_oracle": 120.0 / oracle,
            "scaling_changes": 0,
        }
    )
    settings = ReplaySettings(10.0, timedelta(minutes=3), quantile=quantile)
    return ReplayResult(runs, summary, settings)


def test_the_replay_report_says_what_was_run(tmp_path: Path) -> None:
    # A quantile of 0.995 read "covers the 100% forecast quantile", a run without the
    # oracle had "nan×" for its cost against it, and an HPA-only run described the
    # predictive policy's settings.
    result = replayed(["predictive", "hpa"], quantile=0.995)
    text = write_report(result, tmp_path / "r.html", "Replay").read_text()
    assert "The predictive policy covers the forecast's 99.5% quantile" in text
    assert "the HPA targets 70% utilisation." in text
    assert "nan" not in text and "nan" not in summary_table(result.summary)
    assert summary_table(result.summary).splitlines()[1].split()[-2] == "-"
    hpa = write_report(replayed(["hpa"], quantile=0.9), tmp_path / "h.html", "Replay")
    assert "predictive" not in hpa.read_text().split("<h2>Summary")[0]
    assert "The HPA targets 70% utilisation." in hpa.read_text()


def test_explain_at_a_second_is_the_decision_in_force_then(tmp_path: Path) -> None:
    # --at 09:41:30 explained the decision made at 09:41:50, after the moment asked about
    # (an alert's timestamp), because --at was always read to the end of its minute.
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    minute = datetime(2026, 11, 20, 9, 41, tzinfo=UTC)
    with DecisionLog(db) as log:
        log.record_many(
            [
                replace(sample(0), at=minute + timedelta(seconds=10), current_replicas=10),
                replace(sample(0), at=minute + timedelta(seconds=50), current_replicas=50),
            ]
        )
    for at, current in (("09:41:30", 10), ("09:41:30.5", 10), ("09:41", 50), ("09:41:50", 50)):
        code, out = cli(
            "decisions", "explain", "prod/portal", "--at", f"2026-11-20 {at}", "--db", db
        )
        assert code == 0, out
        assert out.startswith(f"would have scaled {current} → 30"), (at, out)
    code, out = cli(
        "decisions", "explain", "prod/portal", "--at", "2026-11-20 09:41:05", "--db", db
    )
    assert (code, out) == (
        2,
        "error: no decision of prod/portal at or before 2026-11-20 09:41 UTC\n",
    )


def told(
    spec: PolicySpec, current: int, load: float | None, peak: float | None, *history: int
) -> str:
    """explain() of the policy's decision under a flat forecast of ``peak`` (None: no
    forecast); ``history`` holds recommendations made one minute ago."""
    times = np.array(
        [np.datetime64((NOW + timedelta(minutes=m)).replace(tzinfo=None)) for m in range(-5, 30)]
    )
    forecast = (
        Forecast(NOW, times, np.full(len(times), peak), 0.9, model_version="m1")
        if peak is not None
        else None
    )
    recent = [Recommendation(NOW - timedelta(minutes=1), count) for count in history]
    decision = decide(spec, NOW, current, load, forecast, recent)
    record = record_from_decision(
        decision,
        scaler="prod/portal",
        target="Deployment/portal",
        mode="Scale",
        ready_replicas=current,
        spec=spec,
        forecast=forecast,
        hpa_replicas=None,
        at=NOW,
    )
    return explain(replace(record, applied=True))


def test_the_clauses_name_the_count_chosen() -> None:
    # The floor is raised to only up to the maximum: "raised to the 60 pods the load now
    # needs" was told of a scale to 50, with nothing about the maximum.
    capped = replace(SPEC, scale_up_max_step=5)
    assert told(capped, 40, 6_000.0, 6_000.0).startswith(
        "scaled 40 → 50 at 09:41 because the p90 forecast for 09:41–09:44 peaks at 6,000 "
        "rps, each pod serves 100 rps, pods take 3 min to start, so it needs 60; limited by "
        "the scale-up step (asked for 60); raised to the maximum of 50, short of the 60 pods "
        "the load now needs."
    )
    assert "raised to the 60 pods the load now needs." in told(
        replace(capped, max_replicas=80), 40, 6_000.0, 6_000.0
    )
    # A stabilised scale-down that still went part of the way "waited".
    assert told(SPEC, 10, 100.0, 100.0, 7).endswith(
        "so it needs 1; the scale-down to 1 goes only part of the way: the stabilisation "
        "window and the forecast ahead hold the rest."
    )
    assert told(SPEC, 10, 100.0, 100.0, 10).endswith(
        "so it needs 1; the scale-down to 1 waits for the stabilisation window and the "
        "forecast ahead."
    )


def test_reading_a_database_without_a_log_neither_creates_one_nor_reads_empty(
    url: str,  # noqa: F811
) -> None:
    # A mistyped database name (PostgreSQL) or another SQLite file read as "the decision
    # log ... is empty", and the command, which only reads, had created the tables in it.
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the database exists, and holds something else
        conn.execute(sa.text("CREATE TABLE other (x INTEGER)"))
    code, out = cli("decisions", "list", "prod/portal", "--db", url)
    assert code == 2
    assert out.startswith(f"error: no decision log in {url} (it has no decisions table)")
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["other"]
    engine.dispose()
    with pytest.raises(LookupError, match="holds no decision log"):
        DecisionLog(url, create=False)
    DecisionLog(url).close()  # a writer creates it
    DecisionLog(url, create=False).close()


def test_a_log_made_before_not_applied_gains_it_on_open(tmp_path: Path) -> None:
    """The reason a decision was not applied is a column added in place: an older log
    gains it when a writer opens it; a reader that may not write reads the log without it."""
    path = tmp_path / "decisions.db"
    db = f"sqlite:///{path}"
    with DecisionLog(db) as log:
        log.record(sample(0))
    engine = sa.create_engine(db)
    with engine.begin() as conn:  # as the surgecast before the column made it
        conn.execute(sa.text("ALTER TABLE decisions DROP COLUMN not_applied"))
    engine.dispose()
    with DecisionLog(f"sqlite:///file:{path}?mode=ro&uri=true", create=False) as log:
        assert [r.not_applied for r in log.list()] == [None]
    with DecisionLog(db) as log:
        record_id = log.record(sample(1))
        log.mark_not_applied(record_id, "ConflictingHPA: HPA portal also scales it")
        assert [r.not_applied for r in log.list()] == [
            None,
            "ConflictingHPA: HPA portal also scales it",
        ]


def test_a_writer_that_may_not_alter_an_older_log_writes_without_not_applied(
    postgres: pg_server.PgServer,
) -> None:
    old, as_writer = older_log_for_role(
        postgres,
        "ALTER TABLE decisions DROP COLUMN not_applied",
        "writer",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON decisions, schema_version TO {role}",
        "GRANT USAGE ON SEQUENCE decisions_id_seq TO {role}",
    )
    with DecisionLog(as_writer) as log:
        record_id = log.record(sample(1))
        log.mark_not_applied(record_id, "ScaleFailed: could not apply 11 replicas")
        assert [(r.current_replicas, r.not_applied) for r in log.list()] == [(10, None), (11, None)]
    with DecisionLog(old) as log:  # its owner adds the column
        record_id = log.record(sample(2))
        log.mark_not_applied(record_id, "ScaleFailed: could not apply 12 replicas")
        assert [r.not_applied for r in log.list()][-1] == "ScaleFailed: could not apply 12 replicas"
