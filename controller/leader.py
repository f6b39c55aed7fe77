"""Lease-based leader election: only one controller instance acts at a time.

Follows client-go's ``leaderelection`` semantics. A candidate takes over a Lease only when
it has seen the *same* lease record unchanged for the record's own ``leaseDurationSeconds``
on its own clock (so clock skew between machines does not matter, nor a holder started with
other settings), and a leader stops acting once it has failed to renew for
``renew_deadline``, or at once when it finds another instance holding the lease. Because
``renew_deadline < lease_duration``, an old leader always stops before a new one can
start: there is a gap, never an overlap.

Both durations are measured on a monotonic clock, as client-go's ``time.Time`` subtraction
does: a wall clock that NTP steps back would otherwise keep a leader cut off from the API
acting long past its renew deadline while a standby takes over, and one stepped forward
would let a standby take over a lease that is still being renewed. The wall time passed to
:meth:`LeaderElector.tick` only stamps the Lease's ``acquireTime`` and ``renewTime``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.kube import KubeClient, KubeError

log = logging.getLogger("surgecast.leader")


@dataclass(frozen=True)
class LeaderSettings:
    """Timings of the election, as in kube-controller-manager's defaults."""

    lease_duration: timedelta = timedelta(seconds=15)
    """How long a lease record must stay unchanged before a standby may take it over."""

    renew_deadline: timedelta = timedelta(seconds=10)
    """How long a leader keeps acting without a successful renewal; < lease_duration."""

    retry_period: timedelta = timedelta(seconds=2)
    """How often candidates and the leader call :meth:`LeaderElector.tick`."""


@dataclass
class LeaderElector:
    """One controller instance's view of the election. Call :meth:`tick` every retry period."""

    kube: KubeClient
    namespace: str
    name: str
    identity: str
    settings: LeaderSettings = field(default_factory=LeaderSettings)
    monotonic: Callable[[], float] = time.monotonic
    """Seconds on a clock that never steps: times renewals and observations."""

    _renewed_at: float | None = None
    _observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
    _observed_at: float | None = None
    _observed_duration: timedelta | None = None
    """The observed record's own ``leaseDurationSeconds``: what its holder promised."""
    transitions: int = 0
    error: KubeError | None = None
    """Why the last tick could not read or write the Lease (None: it could). Logged once per
    kind of error, and shown on ``/readyz``: with a 403 (RBAC), a Lease namespace that does
    not exist or an API server out of reach, every replica stays standby, and nothing else
    would say why."""

    def tick(self, now: datetime) -> bool:
        """Try to acquire or renew the lease, stamped with the wall time ``now``; return
        whether this instance may act now."""
        # Read before asking: a renewal counts from when it was sent, not when it returned.
        sent = self.monotonic()
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            if lease is None:
                self._write(None, now, sent)
            else:
                self._observe(lease)
                spec = lease.get("spec", {})
                if spec.get("holderIdentity") == self.identity or self._expired():
                    self._write(lease, now, sent)
                else:
                    # Another instance holds an unexpired lease: it acts now, so this one
                    # stops at once rather than at its renew deadline.
                    self._renewed_at = None
        except KubeError as exc:
            # Judged by the renew deadline below. A lost race (409) is the election at work:
            # the API answered, and another instance wrote first.
            self._note(None if exc.conflict else exc)
        else:
            self._note(None)
        return self.is_leader()

    def is_leader(self) -> bool:
        """True while the last successful renewal is within the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self._since(renewed) < self.settings.renew_deadline

    def release(self, now: datetime) -> None:
        """Give the lease up on shutdown, stamped with the wall time ``now``, so a standby
        takes over at once."""
        if not self.is_leader():
            return
        # Whatever happens to the release, this instance stops acting now.
        self._renewed_at = None
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            if lease and lease.get("spec", {}).get("holderIdentity") == self.identity:
                lease["spec"].update(
                    holderIdentity=None,
                    leaseDurationSeconds=1,
                    renewTime=now.isoformat(timespec="microseconds"),
                )
                self.kube.replace_lease(self.namespace, lease)
        except KubeError as exc:
            # Raised, it would abort the shutdown half-way (HTTP server, watch and model
            # workers left running); unreleased, the lease merely expires as after a crash.
            log.warning("lease %s/%s not released: %s", self.namespace, self.name, exc)

    def _note(self, error: KubeError | None) -> None:
        """Keep ``error`` as :attr:`error`, logging a new kind of error and the recovery.

        Errors are told apart by call, status and reason, not by message: an unreachable
        API's message names a new connection object at every try."""
        before, self.error = self.error, error
        if error is None:
            if before is not None:
                log.info("Lease %s/%s reachable again", self.namespace, self.name)
            return
        if before is None or _kind(before) != _kind(error):
            log.warning(
                "leader election failed: %s; this instance cannot lead (or goes on leading"
                " only until its renew deadline) while the Lease %s/%s is out of reach",
                error,
                self.namespace,
                self.name,
            )

    def _since(self, then: float) -> timedelta:
        return timedelta(seconds=self.monotonic() - then)

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec", {})
        record = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime")))
        if record != self._observed:
            self._observed, self._observed_at = record, self.monotonic()
        # As client-go: the holder's lease lasts as long as its record says, not as long as
        # this instance's settings say; a holder started with a longer lease (and renew
        # deadline) keeps acting longer than a standby's own lease_duration.
        seconds = spec.get("leaseDurationSeconds")
        valid = isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0
        self._observed_duration = (
            timedelta(seconds=seconds) if valid else self.settings.lease_duration
        )

    def _expired(self) -> bool:
        if self._observed is not None and not self._observed[0]:
            return True  # released
        duration = self._observed_duration or self.settings.lease_duration
        return self._observed_at is not None and self._since(self._observed_at) >= duration

    def _write(self, lease: dict[str, Any] | None, now: datetime, sent: float) -> None:
        stamp = now.isoformat(timespec="microseconds")
        # Rounded up: the record is what a standby waits for, and a second cut off a lease
        # of 1.9 s (renew deadline 1.5 s) would let it take over while this one still acts.
        seconds = math.ceil(self.settings.lease_duration.total_seconds())
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": seconds,
                    "acquireTime": stamp,
                    "renewTime": stamp,
                    "leaseTransitions": 0,
                },
            }
            self.kube.create_lease(self.namespace, body)
        else:
            spec = lease.setdefault("spec", {})
            if spec.get("holderIdentity") != self.identity:
                spec["acquireTime"] = stamp
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
                self.transitions += 1
            spec.update(holderIdentity=self.identity, leaseDurationSeconds=seconds, renewTime=stamp)
            self.kube.replace_lease(self.namespace, lease)
        self._renewed_at = sent


def _kind(error: KubeError) -> tuple[str, int, str]:
    return error.action, error.status, error.reason
