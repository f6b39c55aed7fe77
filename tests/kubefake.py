"""A small stateful fake of the Kubernetes API on loopback, for the real ``kubernetes`` client.

It keeps objects with resourceVersions and generations (bumped on spec changes only),
serves the scale subresource of Deployments, Leases with optimistic concurrency (409 on a
stale resourceVersion; 400 for a time not in MicroTime's form), Events, HPAs, Pods, and
PredictiveScalers with a status subresource; API discovery (``GET /api/v1`` and
``/apis/<group>/<version>``, listing each served kind with its plural and subresources);
lists (namespaced and cluster-wide, with equality label selectors) and watches (from a resourceVersion, ``410 Gone`` once it is compacted away); answers with
real ``Status`` bodies; refuses a body with a NaN or an infinity (400 ``BadRequest``: JSON has
neither, though Python's json writes them); and injects faults (a status code, optionally with
``Retry-After``, for the next N matching requests). Every request is journalled with the
client's User-Agent, so tests can assert the exact calls made and who made them.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kubernetes import client

from controller.kube import api_client

COLLECTION = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/(?P<version>[^/]+))(?:/namespaces/(?P<ns>[^/]+))?"
    r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>scale|status))?$"
)


DISCOVERY = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/?$")


@dataclass(frozen=True)
class Served:
    """One resource an API group version serves, as discovery lists it."""

    plural: str
    kind: str
    scale: bool = False
    status: bool = False
    namespaced: bool = True


def _builtin_resources() -> dict[str, list[Served]]:
    """What a plain cluster with surgecast's CRD installed serves, of what the tests touch."""
    return {
        "v1": [
            Served("pods", "Pod", status=True),
            Served("events", "Event"),
            Served("replicationcontrollers", "ReplicationController", scale=True, status=True),
            Served("namespaces", "Namespace", status=True, namespaced=False),
        ],
        "apps/v1": [
            Served("deployments", "Deployment", scale=True, status=True),
            Served("statefulsets", "StatefulSet", scale=True, status=True),
            Served("replicasets", "ReplicaSet", scale=True, status=True),
            Served("daemonsets", "DaemonSet", status=True),
            Served("controllerrevisions", "ControllerRevision"),
        ],
        "autoscaling/v2": [
            Served("horizontalpodautoscalers", "HorizontalPodAutoscaler", status=True)
        ],
        "coordination.k8s.io/v1": [Served("leases", "Lease")],
        "surgecast.dev/v1alpha1": [Served("predictivescalers", "PredictiveScaler", status=True)],
    }


@dataclass
class Fault:
    method: str
    path: str
    status: int
    times: int = 1
    retry_after: int | None = None
    delay: float = 0.0
    """Seconds to wait before answering: longer than the client's timeout is a timeout."""
    truncate: bool = False
    """Close the connection before the whole body is sent (a connection dropped mid-answer)."""


@dataclass
class Call:
    method: str
    path: str
    body: Any
    status: int
    agent: str = ""
    at: float = field(default_factory=time.monotonic)


@dataclass
class Change:
    """One entry of the watch history: what a watcher from before ``version`` receives."""

    version: int
    plural: str
    namespace: str
    kind: str
    obj: dict[str, Any]


@dataclass
class FakeKube:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    journal: list[Call] = field(default_factory=list)
    version: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)
    changes: list[Change] = field(default_factory=list)
    compacted: int = 0
    """Watches from a resourceVersion below this get ``410 Gone`` (etcd compaction)."""

    changed: threading.Condition = field(default_factory=threading.Condition)
    resources: dict[str, list[Served]] = field(default_factory=_builtin_resources)
    """What discovery lists, by apiVersion; see :meth:`serve`."""

    def serve(
        self,
        api_version: str,
        plural: str,
        kind: str,
        scale: bool = True,
        namespaced: bool = True,
    ) -> None:
        """Serve ``kind`` as ``plural`` in ``api_version`` from now on, as installing (or
        updating) its CustomResourceDefinition does; by default with a scale subresource."""
        with self.lock:
            served = [r for r in self.resources.get(api_version, []) if r.kind != kind]
            self.resources[api_version] = [
                *served,
                Served(plural, kind, scale=scale, status=True, namespaced=namespaced),
            ]

    def discovery(self, api_version: str) -> dict[str, Any] | None:
        """The APIResourceList of ``api_version`` (None: not served), as the API server's.

        Subresources are listed as ``<plural>/<sub>``; a scale's kind is autoscaling/v1's
        Scale, whatever the group of the resource it scales.
        """
        served = self.resources.get(api_version)
        if served is None:
            return None
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        listed: list[dict[str, Any]] = []
        for r in served:
            listed.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": verbs,
                }
            )
            if r.scale:
                listed.append(
                    {
                        "name": f"{r.plural}/scale",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": ["get", "patch", "update"],
                    }
                )
            if r.status:
                listed.append(
                    {
                        "name": f"{r.plural}/status",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": api_version,
            "resources": listed,
        }

    def put(self, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` as the API server would on create (uid, resourceVersion, generation).

        An object of an apiVersion and kind not served yet is served from now on under
        ``plural``, as if its CRD had been installed (with a scale subresource when its spec
        has replicas); :meth:`serve` declares one explicitly."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        served = self.resources.get(str(api_version), [])
        if api_version and kind and not any(r.kind == kind for r in served):
            self.serve(str(api_version), plural, str(kind), "replicas" in obj.get("spec", {}))
        with self.lock:
            return self._store(plural, namespace, copy.deepcopy(obj), new=True)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return self.objects[(plural, namespace, name)]

    def update(self, plural: str, namespace: str, name: str, change: dict[str, Any]) -> None:
        """Merge ``change`` into an object as a user's ``kubectl apply`` would."""
        with self.lock:
            current = self.objects[(plural, namespace, name)]
            self._store(plural, namespace, _merge(current, change))

    def delete(self, plural: str, namespace: str, name: str) -> None:
        """Delete as ``kubectl delete`` does: an object with finalizers is only marked."""
        with self.lock:
            self._delete(plural, namespace, name)

    def _delete(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """An object with finalizers gets a deletionTimestamp (and stays until they are all
        removed, see :meth:`_store`); one without is removed at once."""
        current = self.objects[(plural, namespace, name)]
        if not current["metadata"].get("finalizers"):
            return self._remove(plural, namespace, name)
        if current["metadata"].get("deletionTimestamp"):
            return current
        marked = copy.deepcopy(current)
        marked["metadata"]["deletionTimestamp"] = "2026-11-20T12:00:00Z"
        # as the API server does, so that controllers see a change to act on
        marked["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        return self._store(plural, namespace, marked)

    def compact(self) -> None:
        """Forget the watch history, as etcd compaction does: old watches get 410."""
        with self.lock:
            self.compacted = self.version + 1
            self.changes.clear()

    def calls(self, method: str | None = None, contains: str = "") -> list[Call]:
        return [
            c for c in self.journal if (method is None or c.method == method) and contains in c.path
        ]

    def _store(
        self, plural: str, namespace: str, obj: dict[str, Any], new: bool = False
    ) -> dict[str, Any]:
        self.version += 1
        meta = obj.setdefault("metadata", {})
        meta.update(namespace=namespace, resourceVersion=str(self.version))
        previous = self.objects.get((plural, namespace, meta["name"]))
        if new:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", "2026-11-20T00:00:00Z")
            meta["generation"] = 1
        elif previous is not None and previous.get("spec") != obj.get("spec"):
            meta["generation"] = int(previous["metadata"].get("generation", 1)) + 1
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.objects[(plural, namespace, meta["name"])] = obj
            return self._remove(plural, namespace, meta["name"])  # its last finalizer went
        self.objects[(plural, namespace, meta["name"])] = obj
        self._changed(plural, namespace, "ADDED" if new else "MODIFIED", obj)
        return obj

    def _remove(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.pop((plural, namespace, name))
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self._changed(plural, namespace, "DELETED", obj)
        return obj

    def _changed(self, plural: str, namespace: str, kind: str, obj: dict[str, Any]) -> None:
        self.changes.append(Change(self.version, plural, namespace, kind, copy.deepcopy(obj)))
        with self.changed:
            self.changed.notify_all()

    def _list(self, plural: str, namespace: str | None, query: dict[str, str]) -> dict[str, Any]:
        selector = dict(
            part.split("=", 1) for part in query.get("labelSelector", "").split(",") if "=" in part
        )
        items = [
            copy.deepcopy(obj)
            for (kind, ns, _), obj in sorted(self.objects.items())
            if kind == plural
            and (namespace is None or ns == namespace)
            and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]
        return {"kind": "List", "metadata": {"resourceVersion": str(self.version)}, "items": items}

    def watch(
        self, plural: str, namespace: str | None, since: int, timeout: float
    ) -> list[dict[str, Any]] | None:
        """Changes after ``since`` (waiting up to ``timeout`` for one); None when too old."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if since < self.compacted - 1:
                    return None
                found = [
                    {"type": c.kind, "object": c.obj}
                    for c in self.changes
                    if c.version > since
                    and c.plural == plural
                    and (namespace is None or c.namespace == namespace)
                ]
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with self.changed:
                self.changed.wait(min(remaining, 0.2))

    def handle(
        self, method: str, path: str, body: Any
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            fault = next(
                (f for f in self.faults if f.times > 0 and f.method == method and f.path in path),
                None,
            )
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            time.sleep(fault.delay)  # outside the lock: other requests go on meanwhile
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            payload = status_body(fault.status, "injected fault")
            if fault.truncate:  # a length the body does not reach
                headers["Content-Length"] = str(2 * len(json.dumps(payload).encode()))
            return fault.status, payload, headers
        with self.lock:
            discovery = DISCOVERY.match(path.split("?")[0])
            if method == "GET" and discovery:
                api_version = discovery["core"] or f"{discovery['group']}/{discovery['version']}"
                listed = self.discovery(api_version)
                if listed is None:
                    return (
                        404,
                        status_body(404, "the server could not find the requested resource"),
                        {},
                    )
                return 200, listed, {}
            match = COLLECTION.match(path.split("?")[0])
            if not match:
                return 404, status_body(404, f"no route {path}"), {}
            plural, ns, name, sub = match["plural"], match["ns"], match["name"], match["sub"]
            query = dict(parse_qsl(urlsplit(path).query))
            if method == "GET" and name is None:
                return 200, self._list(plural, ns, query), {}
            key = (plural, ns, name or "")
            undecodable = _undecodable(plural, body)
            if method in ("POST", "PUT", "PATCH") and undecodable:
                return 400, status_body(400, undecodable, "BadRequest"), {}
            if method == "POST":
                if len(body["metadata"]["name"]) > 253:
                    message = f"metadata.name: Invalid value: {body['metadata']['name']!r}:"
                    return (
                        422,
                        status_body(422, f"{message} must be no more than 253 characters"),
                        {},
                    )
                if (plural, ns, body["metadata"]["name"]) in self.objects:
                    return (
                        409,
                        status_body(
                            409,
                            f'{plural} "{body["metadata"]["name"]}" already exists',
                            "AlreadyExists",
                        ),
                        {},
                    )
                return 201, self._store(plural, ns, body, new=True), {}
            if key not in self.objects:
                return 404, status_body(404, f'{plural} "{name}" not found', "NotFound"), {}
            current = self.objects[key]
            if method == "DELETE":
                self._delete(plural, ns, name)
                return 200, status_body(200, "deleted", "Deleted"), {}
            if method == "GET":
                return 200, _scale(current) if sub == "scale" else current, {}
            # A write with a resourceVersion (a replace, a patch that sends one) is refused
            # when the object has changed since.
            sent = (body or {}).get("metadata", {}).get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                message = f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified'
                return 409, status_body(409, message, "Conflict"), {}
            if method == "PUT":
                body["metadata"] = {
                    **current["metadata"],
                    **{k: v for k, v in body["metadata"].items() if k != "resourceVersion"},
                }
                return 200, self._store(plural, ns, body), {}
            if method == "PATCH":
                if sub == "scale":
                    current["spec"]["replicas"] = int(body["spec"]["replicas"])
                    self._store(plural, ns, current)
                    return 200, _scale(current), {}
                if sub == "status":
                    updated = copy.deepcopy(current)
                    updated["status"] = _merge(current.get("status", {}), body.get("status", {}))
                    return 200, self._store(plural, ns, updated), {}
                merged = _merge(current, {k: v for k, v in body.items() if k != "status"})
                invalid = _invalid(plural, merged)
                if invalid:
                    return 422, status_body(422, f'{plural} "{name}" is invalid: {invalid}'), {}
                return 200, self._store(plural, ns, merged), {}
            return 405, status_body(405, "method not allowed", "MethodNotAllowed"), {}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _invalid(plural: str, obj: dict[str, Any]) -> str | None:
    """What the API server's validation refuses in ``obj``, of the little the fake checks:
    an HPA's minReplicas below 1 (allowed only behind the alpha HPAScaleToZero gate)."""
    low = obj.get("spec", {}).get("minReplicas")
    if plural == "horizontalpodautoscalers" and low is not None and low < 1:
        return f"spec.minReplicas: Invalid value: {low}: must be greater than or equal to 1"
    return None


MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(?:Z|[+-]\d\d:\d\d)$")
"""Go's RFC3339Micro, the only form the API server reads a MicroTime in: exactly six digits
of fraction (Python's ``isoformat()`` writes none when the microseconds are 0)."""


def _undecodable(plural: str, body: Any) -> str | None:
    """Why the API server cannot decode ``body`` as a ``plural`` object, of the little the
    fake checks: a Lease's ``acquireTime`` or ``renewTime`` (MicroTime) in another form."""
    spec = (body or {}).get("spec") if isinstance(body, dict) else None
    if plural != "leases" or not isinstance(spec, dict):
        return None
    for field_name in ("acquireTime", "renewTime"):
        value = spec.get(field_name)
        if value is not None and not MICRO_TIME.match(str(value)):
            return (
                f'Lease in version "v1" cannot be handled as a Lease: parsing time "{value}"'
                ' as "2006-01-02T15:04:05.000000Z07:00": cannot parse as ".000000"'
            )
    return None


def _scale(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    labels = obj.get("spec", {}).get("selector", {}).get("matchLabels", {})
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
            "resourceVersion": meta["resourceVersion"],
        },
        "spec": {"replicas": obj["spec"].get("replicas", 0)},
        "status": {
            "replicas": obj.get("status", {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
        },
    }


REASONS = {
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }


def _not_strict_json(raw: bytes) -> str | None:
    """Why the API server refuses ``raw``, which Python's json reads: a NaN or an infinity,
    which JSON does not have (in the words of Go's decoder); None when it is JSON."""
    found: list[str] = []
    json.loads(raw or b"null", parse_constant=found.append)
    if not found:
        return None
    return f"invalid character '{found[0].lstrip('-')[0]}' looking for beginning of value"


class FakeKubeServer:
    """Serves a :class:`FakeKube` on 127.0.0.1 in a thread; ``api_client()`` talks to it."""

    def __init__(self) -> None:
        self.state = FakeKube()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = dict(parse_qsl(urlsplit(self.path).query))
                agent = self.headers.get("User-Agent", "")
                refused = _not_strict_json(raw)
                if refused is not None:
                    state.journal.append(Call(self.command, self.path, body, 400, agent))
                    self._send(400, status_body(400, refused, "BadRequest"), {})
                    return
                if self.command == "GET" and query.get("watch") in ("true", "True", "1"):
                    state.journal.append(Call("WATCH", self.path, None, 200, agent))
                    self._watch(query)
                    return
                status, payload, headers = state.handle(self.command, self.path, body)
                state.journal.append(Call(self.command, self.path, body, status, agent))
                self._send(status, payload, headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                declared = int(headers.pop("Content-Length", len(data)))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(declared))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = self.close_connection or declared > len(data)

            def _watch(self, query: dict[str, str]) -> None:
                """Stream changes as JSON lines until the watch's timeout, then close."""
                match = COLLECTION.match(urlsplit(self.path).path)
                assert match, self.path
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                since = int(query.get("resourceVersion") or state.version)
                deadline = time.monotonic() + float(query.get("timeoutSeconds") or 5)
                while time.monotonic() < deadline and not server.stopping.is_set():
                    events = state.watch(
                        match["plural"], match["ns"], since, min(1.0, deadline - time.monotonic())
                    )
                    if events is None:
                        gone = status_body(410, f"too old resource version: {since}", "Expired")
                        self._line({"type": "ERROR", "object": gone})
                        return
                    for event in events:
                        self._line(event)
                        since = int(event["object"]["metadata"]["resourceVersion"])

            def _line(self, event: dict[str, Any]) -> None:
                try:
                    self.wfile.write(json.dumps(event).encode() + b"\n")
                    self.wfile.flush()
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                return None

        server = self
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKubeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def api_client(self, agent: str = "surgecast-test") -> client.ApiClient:
        """A real client for this server; ``agent`` tells its calls apart in the journal."""
        made = api_client(host=f"http://127.0.0.1:{self.server.server_address[1]}")
        made.user_agent = agent
        return made


def hpa(name: str, kind: str = "Deployment", max_replicas: int = 10) -> dict[str, Any]:
    """An autoscaling/v2 HPA named ``name`` on the ``apps/v1`` ``kind`` of the same name."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name},
            "minReplicas": 1,
            "maxReplicas": max_replicas,
        },
    }
