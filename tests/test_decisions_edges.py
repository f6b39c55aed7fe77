"""Edge cases of the decision log, its account (explain) and the pages that read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.decisions import record_from_decision
from controller.explain import explain
from controller.policy import PolicySpec, decide

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
