"""Leader election against a stepped wall clock: leadership is timed on a monotonic clock.

Each elector gets its own fake monotonic clock, advanced with true time; the wall clock
passed to ``tick`` only stamps the Lease, so NTP stepping it back or forth changes nothing.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from controller.kube import KubeClient, RetryPolicy
from controller.leader import LeaderElector, LeaderSettings
from tests.kubefake import FakeKubeServer, Fault

T0 = datetime(2026, 3, 5, 1, 0, 17, tzinfo=UTC)


class Monotonic:
    """A monotonic clock the test steps by hand, in seconds."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


@pytest.fixture
def server():
    with FakeKubeServer() as made:
        yield made


def elector(server: FakeKubeServer, identity: str, clock: Monotonic) -> LeaderElector:
    kube = KubeClient(
        server.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None, rng=random.Random(0)
    )
    return LeaderElector(kube, "ns", "lease", identity, LeaderSettings(), monotonic=clock)


def test_a_wall_clock_stepped_back_never_makes_two_leaders(server) -> None:
    clock_a, clock_b = Monotonic(), Monotonic()
    a, b = elector(server, "a", clock_a), elector(server, "b", clock_b)
    assert a.tick(T0) and not b.tick(T0)
    # NTP steps a's wall clock back two minutes; at the same moment a loses the API server.
    lost = Fault("GET", "/leases/", 503, times=10_000)
    server.state.faults.append(lost)
    leaders = []
    for second in range(2, 40, 2):  # both tick every 2 s of true time
        clock_a.seconds += 2
        clock_b.seconds += 2
        a_leads = a.tick(T0 + timedelta(seconds=second) - timedelta(minutes=2))
        server.state.faults.remove(lost)  # b still reaches the API
        b_leads = b.tick(T0 + timedelta(seconds=second))
        server.state.faults.append(lost)
        leaders.append((second, a_leads, b_leads))
        assert not (a_leads and b_leads), f"both lead {second} s after a's last renewal"
    assert [s for s, a_leads, _ in leaders if a_leads] == [2, 4, 6, 8]  # renew deadline: 10 s
    assert [s for s, _, b_leads in leaders if b_leads][0] == 16  # lease duration: 15 s
    assert not a.is_leader()


def test_a_wall_clock_stepped_forward_does_not_take_the_lease_early(server) -> None:
    clock_a, clock_b = Monotonic(), Monotonic()
    a, b = elector(server, "a", clock_a), elector(server, "b", clock_b)
    assert a.tick(T0) and not b.tick(T0)
    # b's wall clock jumps an hour ahead; a's next renewal is 2 s late.
    clock_a.seconds += 2
    clock_b.seconds += 2
    assert not b.tick(T0 + timedelta(hours=1, seconds=2))
    assert a.is_leader() and a.tick(T0 + timedelta(seconds=4))
    assert server.state.get("leases", "ns", "lease")["spec"]["holderIdentity"] == "a"
