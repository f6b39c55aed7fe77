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


def test_a_standby_waits_for_the_lease_duration_its_holder_wrote(server) -> None:
    """A holder started with a 60 s lease (40 s renew deadline) keeps acting for 40 s after
    its last renewal; a standby timing its own 15 s would take over while it still acts."""
    clock_a, clock_b = Monotonic(), Monotonic()
    long = LeaderSettings(
        lease_duration=timedelta(seconds=60), renew_deadline=timedelta(seconds=40)
    )
    a = LeaderElector(elector(server, "a", clock_a).kube, "ns", "lease", "a", long, clock_a)
    b = elector(server, "b", clock_b)
    assert a.tick(T0) and not b.tick(T0)
    lost = Fault("GET", "/leases/", 503, times=10_000)
    b_first = None
    for second in range(2, 80, 2):
        clock_a.seconds += 2
        clock_b.seconds += 2
        server.state.faults.append(lost)
        a_leads = a.tick(T0 + timedelta(seconds=second))
        server.state.faults.remove(lost)
        b_leads = b.tick(T0 + timedelta(seconds=second))
        assert not (a_leads and b_leads), f"both lead {second} s after a's last renewal"
        if b_leads and b_first is None:
            b_first = second
    assert b_first == 60  # the record's 60 s, not b's own 15 s


def test_a_leader_that_finds_another_holder_stops_at_once(server) -> None:
    clock = Monotonic()
    a = elector(server, "a", clock)
    assert a.tick(T0)
    # Another instance now holds the lease (it judged it expired, or an operator moved it).
    server.state.update(
        "leases", "ns", "lease", {"spec": {"holderIdentity": "b", "renewTime": T0.isoformat()}}
    )
    clock.seconds += 2
    assert not a.tick(T0 + timedelta(seconds=2))
    assert not a.is_leader()  # not for the rest of its renew deadline
    assert server.state.get("leases", "ns", "lease")["spec"]["holderIdentity"] == "b"


def test_a_release_the_api_refuses_still_ends_leadership_without_raising(server) -> None:
    """On SIGTERM the controller stops its loops, then releases the lease: a release that
    raised would abort the shutdown half-way (HTTP server, watch and workers left running)."""
    clock = Monotonic()
    a = elector(server, "a", clock)
    assert a.tick(T0)
    server.state.faults.append(Fault("PUT", "/leases/", 503, times=10))
    a.release(T0 + timedelta(seconds=1))  # does not raise
    assert not a.is_leader()
    # Not released, so the lease expires as after a crash: a standby waits for it.
    assert server.state.get("leases", "ns", "lease")["spec"]["holderIdentity"] == "a"


def test_a_lease_of_a_fraction_of_a_second_more_is_not_cut_short(server) -> None:
    """The record holds whole seconds; truncated, a 1.9 s lease read as 1 s, shorter than the
    holder's 1.5 s renew deadline."""
    settings = LeaderSettings(
        lease_duration=timedelta(seconds=1.9),
        renew_deadline=timedelta(seconds=1.5),
        retry_period=timedelta(seconds=0.25),
    )
    clock_a, clock_b = Monotonic(), Monotonic()
    a = LeaderElector(elector(server, "a", clock_a).kube, "ns", "lease", "a", settings, clock_a)
    b = LeaderElector(elector(server, "b", clock_b).kube, "ns", "lease", "b", settings, clock_b)
    assert a.tick(T0) and not b.tick(T0)
    lost = Fault("GET", "/leases/", 503, times=10_000)
    for quarter in range(1, 16):
        clock_a.seconds += 0.25
        clock_b.seconds += 0.25
        now = T0 + timedelta(seconds=quarter / 4)
        server.state.faults.append(lost)
        a_leads = a.tick(now)
        server.state.faults.remove(lost)
        b_leads = b.tick(now)
        assert not (a_leads and b_leads), f"both lead {quarter / 4} s after a's last renewal"
    assert b.is_leader()
