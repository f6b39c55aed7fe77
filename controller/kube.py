"""Every Kubernetes API call surgecast makes, and nothing else.

The rest of the controller receives and returns plain data (dicts, ints); only this module
imports the ``kubernetes`` client. Calls that fail for a passing reason (429, 5xx, a
timeout, a dropped connection) are retried with exponential backoff and jitter, honouring
``Retry-After``; anything else is raised at once as :class:`KubeError` with the API
server's own message, so the caller can turn it into a status condition and an Event.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

GROUP = "surgecast.dev"
VERSION = "v1alpha1"
PLURAL = "predictivescalers"
KIND = "PredictiveScaler"
MERGE_PATCH = "application/merge-patch+json"
COMPONENT = "surgecast-controller"
MAX_NAME = 253
"""The longest object name the API server takes (a DNS subdomain)."""

T = TypeVar("T")


class KubeError(Exception):
    """An API call failed for good; ``status`` is the HTTP code (0 for a transport error)."""

    def __init__(self, action: str, status: int, reason: str, message: str) -> None:
        super().__init__(
            f"{action}: {status} {reason}: {message}" if status else f"{action}: {message}"
        )
        self.action = action
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class RetryPolicy:
    """How passing failures are retried.

    ``attempts`` counts the first try. Delays grow as ``base * 2**n`` up to ``cap`` seconds,
    with full jitter so that many controllers do not retry in step; a server's
    ``Retry-After`` wins when it is longer.
    """

    attempts: int = 5
    base: float = 0.2
    cap: float = 10.0
    timeout: float = 10.0
    """Seconds before a single request is abandoned (and retried)."""

    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        backoff = rng.uniform(0, min(self.cap, self.base * 2**attempt))
        return max(backoff, retry_after or 0.0)


@dataclass(frozen=True)
class ScaleTarget:
    """What the scale subresource says about a workload."""

    kind: str
    name: str
    namespace: str
    spec_replicas: int
    status_replicas: int
    selector: str
    uid: str = ""
    """The workload's uid (a scale carries its object's metadata): ``kubectl describe``
    shows only the Events whose ``involvedObject.uid`` is the object's."""


class _ApiClient(client.ApiClient):
    """The ``kubernetes`` client, writing times in the form the API server reads.

    The client writes a time with ``isoformat()``, which leaves out the fraction when the
    microseconds are 0, and it turns every body into its model first, so even a Lease
    stamped ``...T09:41:00.000000+00:00`` went out as ``...T09:41:00+00:00``. The API
    server reads a Lease's ``acquireTime`` and ``renewTime`` (MicroTime) only with exactly
    six digits of fraction and refused that write with 400: a leader whose acquireTime
    fell on a whole second could renew no more and lost the lease. Six digits always are
    also a valid RFC 3339 time, for every other time field.
    """

    def sanitize_for_serialization(self, obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat(timespec="microseconds")
        return super().sanitize_for_serialization(obj)


def api_client(kubeconfig: str | None = None, host: str | None = None) -> client.ApiClient:
    """An ApiClient from a kubeconfig, the in-cluster service account, or a plain ``host``.

    urllib3's own retries are switched off: otherwise it silently retries 429 and 503
    answers that carry ``Retry-After``, sleeping for real, outside :class:`RetryPolicy`.
    """
    from kubernetes import config

    configuration = client.Configuration()
    if host is not None:
        configuration.host = host
    elif kubeconfig is not None:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    configuration.retries = False
    return _ApiClient(configuration)


@dataclass(frozen=True)
class _Resource:
    """One kind an API group version serves, as its discovery document lists it."""

    plural: str
    namespaced: bool
    scale: bool
    """Whether it has a scale subresource (``<plural>/scale``)."""


@dataclass
class KubeClient:
    """The controller's only door to the API server; build its client with :func:`api_client`.

    ``sleep`` and ``rng`` are injectable so tests run retries instantly and repeatably.
    """

    api_client: client.ApiClient
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    _resources: dict[str, dict[str, _Resource]] = field(
        default_factory=dict, init=False, repr=False
    )
    """Discovery's answer per apiVersion: the kinds served there (see :meth:`_scale_plural`)."""

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.autoscaling = client.AutoscalingV2Api(self.api_client)
        self.coordination = client.CoordinationV1Api(self.api_client)

    # -- the retry loop -------------------------------------------------------------------

    def call(
        self,
        action: str,
        fn: Callable[..., T],
        *args: Any,
        precondition: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run one API call with the retry policy; raise :class:`KubeError` when it fails.

        A 409 Conflict is retried for merge patches: they carry no resourceVersion, so the
        retry applies the same change to the object as it now is. For a write made with a
        resourceVersion (``precondition``: the Lease, a scaler's finalizers) a conflict
        means someone else changed the object first, and is raised.
        """
        kwargs.setdefault("_request_timeout", self.retry.timeout)
        retried = self.retry.retry_statuses
        if kwargs.get("_content_type") == MERGE_PATCH and not precondition:
            retried = retried | {409}
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                return fn(*args, **kwargs)
            except ApiException as exc:
                if exc.status not in retried or last:
                    raise _api_error(action, exc) from None
                self.sleep(self.retry.delay(attempt, self.rng, _retry_after(exc)))
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if last:
                    raise _transport_error(action, exc, self.retry.timeout) from None
                self.sleep(self.retry.delay(attempt, self.rng))
        raise AssertionError("unreachable: the loop returns or raises")

    def call_custom(
        self, action: str, fn: Callable[..., object], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        """:meth:`call` for a ``CustomObjectsApi`` method: those return the object's JSON as a
        dict, but the client types them as returning ``object``."""
        return cast(dict[str, Any], self.call(action, fn, *args, **kwargs))

    # -- PredictiveScalers ----------------------------------------------------------------

    def list_scalers(self, namespace: str | None) -> tuple[list[dict[str, Any]], str]:
        """All PredictiveScalers (in one namespace, or all), and the list's resourceVersion."""
        if namespace:
            result = self.call_custom(
                "list PredictiveScalers",
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
            )
        else:
            result = self.call_custom(
                "list PredictiveScalers",
                self.custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                PLURAL,
            )
        return list(result.get("items", [])), str(
            result.get("metadata", {}).get("resourceVersion", "")
        )

    def watch_scalers(
        self, namespace: str | None, resource_version: str, timeout_seconds: int = 60
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(event type, object)`` from ``resource_version`` until the server closes.

        Raises :class:`KubeError` with status 410 when the version is too old: list again.
        The server ends a watch after ``timeout_seconds``; a stream still silent
        ``retry.timeout`` seconds after that is dead (an API server or load balancer that
        went away without closing it) and raises a timeout, so the caller lists again
        instead of waiting forever for changes that never come.
        """
        stream = watch.Watch()
        if namespace:
            fn: Callable[..., Any] = self.custom.list_namespaced_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, namespace, PLURAL)
        else:
            fn, args = self.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        try:
            for event in stream.stream(
                fn,
                *args,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                _request_timeout=(self.retry.timeout, timeout_seconds + self.retry.timeout),
            ):
                if event["type"] == "ERROR":
                    status = event["raw_object"]
                    raise KubeError(
                        "watch PredictiveScalers",
                        int(status.get("code", 500)),
                        str(status.get("reason", "")),
                        str(status.get("message", "")),
                    )
                yield event["type"], event["object"]
        except ApiException as exc:
            raise _api_error("watch PredictiveScalers", exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transport_error("watch PredictiveScalers", exc, self.retry.timeout) from None
        finally:
            stream.stop()

    def set_scaler_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        """Replace the scaler's finalizers, if it is still at ``resource_version``.

        A merge patch replaces a list whole, so without the version it could drop a
        finalizer another controller added meanwhile; with it, that is a 409, raised.
        """
        return self.call_custom(
            f"set finalizers of PredictiveScaler {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}},
            precondition=True,
            _content_type=MERGE_PATCH,
        )

    def patch_scaler_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge ``status`` into the status subresource (no resourceVersion: last write wins).

        Only the controller writes status, so a merge patch cannot clobber anyone else.
        """
        return self.call_custom(
            f"update status of PredictiveScaler {namespace}/{name}",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            _content_type=MERGE_PATCH,
        )

    # -- scale subresource ----------------------------------------------------------------

    def get_scale(self, namespace: str, target: dict[str, Any]) -> ScaleTarget:
        kind, name = target["kind"], target["name"]
        action = f"get scale of {kind} {namespace}/{name}"
        scale = self._scale_call(target, action, 0, name, namespace)
        return _scale_target(kind, namespace, scale)

    def set_scale(self, namespace: str, target: dict[str, Any], replicas: int) -> ScaleTarget:
        """Set ``spec.replicas`` through the scale subresource (never the whole object)."""
        kind, name = target["kind"], target["name"]
        scale = self._scale_call(
            target,
            f"scale {kind} {namespace}/{name} to {replicas}",
            1,
            name,
            namespace,
            {"spec": {"replicas": int(replicas)}},
            _content_type=MERGE_PATCH,
        )
        return _scale_target(kind, namespace, scale)

    def _scale_call(
        self, target: dict[str, Any], action: str, method: int, *args: Any, **kwargs: Any
    ) -> Any:
        """Call the target's scale read (``method`` 0) or patch (1).

        A 404 for a kind found by discovery may mean the kind itself is gone since (its CRD
        deleted, or this version no longer served): discovery is asked again, so that the
        error says so, instead of "the server could not find the requested resource".
        """
        try:
            return self.call(action, self._scale_methods(target)[method], *args, **kwargs)
        except KubeError as exc:
            api_version = target.get("apiVersion") or "apps/v1"
            if exc.not_found and self._resources.pop(api_version, None) is not None:
                self._scale_methods(target)  # raises when the kind is no longer served
            raise

    def _scale_methods(
        self, target: dict[str, Any]
    ) -> tuple[Callable[..., Any], Callable[..., Any]]:
        kind = target["kind"]
        # The group decides as much as the kind: OpenKruise's Advanced StatefulSet is kind
        # StatefulSet in apps.kruise.io, and taken for apps' it would scale the native
        # StatefulSet of the same name, if any.
        group, version = api_group(target), _version(target)
        if group != "apps":
            return self._custom_scale_methods(group, version, kind)
        if kind == "Deployment":
            return (
                self.apps.read_namespaced_deployment_scale,
                self.apps.patch_namespaced_deployment_scale,
            )
        if kind == "StatefulSet":
            return (
                self.apps.read_namespaced_stateful_set_scale,
                self.apps.patch_namespaced_stateful_set_scale,
            )
        if kind == "ReplicaSet":
            return (
                self.apps.read_namespaced_replica_set_scale,
                self.apps.patch_namespaced_replica_set_scale,
            )
        return self._custom_scale_methods(group, version, kind)

    def _custom_scale_methods(
        self, group: str, version: str, kind: str
    ) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """The scale subresource's read and patch of any other kind, by the plural that API
        discovery gives for it (a ReplicationController's through the core API)."""
        plural = self._scale_plural(group, version, kind)
        if not group:
            return (
                self.core.read_namespaced_replication_controller_scale,
                self.core.patch_namespaced_replication_controller_scale,
            )

        def read(name: str, namespace: str, **kw: Any) -> Any:
            return self.custom.get_namespaced_custom_object_scale(
                group, version, namespace, plural, name, **kw
            )

        def patch(name: str, namespace: str, body: Any, **kw: Any) -> Any:
            return self.custom.patch_namespaced_custom_object_scale(
                group, version, namespace, plural, name, body, **kw
            )

        return read, patch

    def _scale_plural(self, group: str, version: str, kind: str) -> str:
        """The resource name (plural) under which ``group/version`` serves ``kind``'s scale
        subresource, found by API discovery as kubectl and the HPA controller find it.

        A CRD chooses its plural freely (``Policy`` is ``policies``, ``Proxy`` ``proxies``),
        so the kind plus "s" was a guess that sent such targets to a path that does not
        exist. Discovery is cached per group version, and a kind it did not find there
        (or found without a scale subresource) is asked for again: a CRD installed, or given
        a scale subresource, after the controller started is found at the next reconcile.
        The core group has only ReplicationControllers to scale.
        """
        api_version = f"{group}/{version}" if group else version
        action = f"find the scale subresource of {kind} in {api_version}"
        found = self._resources.get(api_version, {}).get(kind)
        if found is None or not found.scale:
            self._resources[api_version] = self._discover(group, version, kind, action)
            found = self._resources[api_version].get(kind)
        scalable = sorted(k for k, r in self._resources[api_version].items() if r.scale)
        if found is None or (not group and kind != "ReplicationController"):
            hint = f"; its kinds with one: {', '.join(scalable)}" if scalable else ""
            raise KubeError(
                action, 404, "NotFound", f"{api_version} serves no kind {kind} to scale{hint}"
            )
        if not found.scale:
            raise KubeError(
                action,
                404,
                "NotFound",
                f"{kind} ({found.plural} in {api_version}) has no scale subresource, which"
                " surgecast reads and writes replicas through, as the HPA does",
            )
        if not found.namespaced:
            raise KubeError(
                action,
                404,
                "NotFound",
                f"{kind} ({found.plural} in {api_version}) is cluster-scoped: a scale target"
                " lives in the scaler's namespace",
            )
        return found.plural

    def _discover(self, group: str, version: str, kind: str, action: str) -> dict[str, _Resource]:
        """The kinds ``group/version`` serves, by API discovery (``GET /apis/<group>/<version>``,
        or ``/api/v1`` for the core group), which every authenticated user may read."""
        api_version = f"{group}/{version}" if group else version
        missing = KubeError(
            action,
            404,
            "NotFound",
            f"the API server does not serve {api_version}: is the CustomResourceDefinition of"
            f" {kind} installed, with {version} among its served versions?"
            if group
            else f"the core group has no version {version}, only v1",
        )
        if not group and version != "v1":
            raise missing
        fetch: Callable[..., Any] = (
            self.custom.get_api_resources if group else self.core.get_api_resources
        )

        def read(**kw: Any) -> bytes:
            # Raw, and the body read inside the retry loop: the client's strict model of
            # the list refuses a document without a field it requires (only name, kind and
            # namespaced matter here), and a body cut off is a transport error to retry.
            response = fetch(*((group, version) if group else ()), _preload_content=False, **kw)
            return cast(bytes, response.data)

        try:
            body = self.call(f"discover {api_version}", read)
        except KubeError as exc:
            if exc.not_found:
                raise missing from None
            raise
        try:
            listed = json.loads(body).get("resources") or []
        except (ValueError, AttributeError) as exc:
            raise KubeError(
                action, 0, "BadResponse", f"discovery of {api_version}: {exc}"
            ) from None
        names = {str(r.get("name", "")) for r in listed if isinstance(r, dict)}
        return {
            str(r["kind"]): _Resource(
                plural=str(r["name"]),
                namespaced=bool(r.get("namespaced")),
                scale=f"{r['name']}/scale" in names,
            )
            for r in listed
            if isinstance(r, dict) and r.get("kind") and "/" not in str(r.get("name", "/"))
        }

    # -- HPAFloor mode --------------------------------------------------------------------

    def find_hpa(
        self, namespace: str, target: dict[str, Any], name: str | None = None
    ) -> dict[str, Any] | None:
        """The HPA called ``name``, or else the one whose scaleTargetRef is ``target``."""
        if name:
            hpa = self.call(
                f"get HPA {namespace}/{name}",
                self.autoscaling.read_namespaced_horizontal_pod_autoscaler,
                name,
                namespace,
            )
            return self.api_client.sanitize_for_serialization(hpa)
        listed = self.call(
            f"list HPAs in {namespace}",
            self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            namespace,
        )
        for hpa in self.api_client.sanitize_for_serialization(listed).get("items", []):
            ref = hpa.get("spec", {}).get("scaleTargetRef", {})
            if (
                ref.get("kind") == target["kind"]
                and ref.get("name") == target["name"]
                and api_group(ref) == api_group(target)  # a kind of the same name in another group
            ):
                return hpa
        return None

    def set_hpa_min_replicas(
        self,
        namespace: str,
        name: str,
        min_replicas: int,
        annotations: dict[str, str | None] | None = None,
    ) -> None:
        """Raise or lower only the HPA's ``minReplicas`` (and set or, with None, remove
        ``annotations`` in the same write); the HPA stays in charge."""
        body: dict[str, Any] = {"spec": {"minReplicas": int(min_replicas)}}
        if annotations:
            body["metadata"] = {"annotations": annotations}
        self.call(
            f"set minReplicas of HPA {namespace}/{name} to {min_replicas}",
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            name,
            namespace,
            body,
            _content_type=MERGE_PATCH,
        )

    # -- pods (startupDelay: auto) ----------------------------------------------------------

    def pod_startup_seconds(self, namespace: str, selector: str) -> list[float]:
        """Creation-to-Ready times of the target's ready pods, in seconds.

        A scale subresource without a selector names no pods (an empty selector would match
        every pod in the namespace), so none are measured. A pod whose containers restarted
        is skipped: its Ready condition moved at the restart, days after it was created.
        """
        if not selector:
            return []
        pods = self.call(
            f"list pods in {namespace}",
            self.core.list_namespaced_pod,
            namespace,
            label_selector=selector,
        )
        seconds = []
        for pod in pods.items:
            # The API server always sets both; were one missing, the pod counts as not ready,
            # like a pod without conditions or a creation time.
            if pod.status is None or pod.metadata is None:
                continue
            if any(c.restart_count for c in pod.status.container_statuses or []):
                continue
            created = pod.metadata.creation_timestamp
            ready = next(
                (
                    c
                    for c in (pod.status.conditions or [])
                    if c.type == "Ready" and c.status == "True"
                ),
                None,
            )
            if ready is not None and ready.last_transition_time and created:
                seconds.append((ready.last_transition_time - created).total_seconds())
        return seconds

    # -- Events ---------------------------------------------------------------------------

    def emit_event(
        self,
        involved: dict[str, Any],
        event_type: str,
        reason: str,
        message: str,
        now: datetime,
    ) -> None:
        """Create a core/v1 Event about ``involved`` (an object's apiVersion/kind/metadata).

        An Event that cannot be written is not worth failing a reconcile for; the caller
        logs the :class:`KubeError` instead.
        """
        meta = involved["metadata"]
        # Unique like the API server's own names: the time, then random bits, so two Events
        # in the same instant (about the scaler and about its target) never collide. A name
        # is at most 253 characters, as the object's may be: its end makes room for them
        # (and a name cut after a "." or "-" would not be a DNS subdomain).
        unique = f".{int(now.timestamp() * 1e6):x}{uuid.uuid4().hex[:8]}"
        name = meta["name"][: MAX_NAME - len(unique)].rstrip(".-") + unique
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""),
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
        }
        self.call(
            f"create Event {reason}", self.core.create_namespaced_event, meta["namespace"], body
        )

    # -- Leases (leader election) -------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            lease = self.call(
                f"get Lease {namespace}/{name}",
                self.coordination.read_namespaced_lease,
                name,
                namespace,
            )
        except KubeError as exc:
            if exc.not_found:
                return None
            raise
        return self.api_client.sanitize_for_serialization(lease)

    def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        lease = self.call(
            f"create Lease {namespace}/{body['metadata']['name']}",
            self.coordination.create_namespaced_lease,
            namespace,
            body,
        )
        return self.api_client.sanitize_for_serialization(lease)

    def replace_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace with the body's resourceVersion: a 409 means someone else wrote first."""
        lease = self.call(
            f"update Lease {namespace}/{body['metadata']['name']}",
            self.coordination.replace_namespaced_lease,
            body["metadata"]["name"],
            namespace,
            body,
        )
        return self.api_client.sanitize_for_serialization(lease)


def api_group(ref: dict[str, Any]) -> str:
    """The API group of a scale target or an HPA's ``scaleTargetRef``; no apiVersion is the
    CRD's default, apps/v1."""
    return str(ref.get("apiVersion") or "apps/v1").rpartition("/")[0]


def _version(ref: dict[str, Any]) -> str:
    return str(ref.get("apiVersion") or "apps/v1").rpartition("/")[2]


def _scale_target(kind: str, namespace: str, scale: Any) -> ScaleTarget:
    if not isinstance(scale, dict):
        scale = client.ApiClient().sanitize_for_serialization(scale)
    spec, status = scale.get("spec", {}), scale.get("status", {})
    return ScaleTarget(
        kind=kind,
        name=scale["metadata"]["name"],
        namespace=namespace,
        spec_replicas=int(spec.get("replicas") or 0),
        status_replicas=int(status.get("replicas") or 0),
        selector=str(status.get("selector") or ""),
        uid=str(scale["metadata"].get("uid") or ""),
    )


def _api_error(action: str, exc: ApiException) -> KubeError:
    reason, message = str(exc.reason or ""), ""
    try:
        body = json.loads(exc.body or "{}")
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
    except (ValueError, TypeError, AttributeError):
        message = str(exc.body or "")[:300]
    return KubeError(action, int(exc.status or 0), reason, message)


def _transport_error(action: str, exc: Exception, timeout: float) -> KubeError:
    """A failure below HTTP as a :class:`KubeError`. A timeout gets a stable message
    (urllib3's carries the time left, which varies) so repeats are recognised as repeats.

    A refused connection or an unknown host is no timeout, although urllib3 derives its
    error from ``ConnectTimeoutError``: told "no answer within 10 s", an operator would
    look for a slow API server rather than a wrong address or a server that is down."""
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        # Without the connection object's repr, which names a new address every time.
        return KubeError(action, 0, "Unreachable", str(exc).removeprefix(f"{exc.conn}: "))
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return KubeError(action, 0, "Timeout", f"no answer within {timeout:g} s")
    return KubeError(action, 0, "Unreachable", f"{type(exc).__name__}: {exc}")


def _retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
