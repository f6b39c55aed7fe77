"""Edge cases of the decision log, its account (explain) and the pages that read it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from controller import decisions
from controller.decisions import DecisionLog, record_from_decision
from controller.explain import explain
from controller.policy import PolicySpec, decide
from tests import pg_server
from tests.test_decisions import sample, url  # noqa: F401 (a fixture)

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
