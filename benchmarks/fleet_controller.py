"""Fleet scale, controller side: one controller process managing N PredictiveScalers.

    .venv/bin/python benchmarks/fleet_controller.py [--sizes 10,100,1000] [--steady 300]
        [--model-workers 2] [--refresh 5m] [--cache DIR]

For each fleet size N, on this machine and in real time:

- a real Prometheus (the Debian ``prometheus``) holds 14 days of each service's request
  rate, backfilled with ``promtool tsdb create-blocks-from openmetrics`` from the same
  seeded fleet as ``benchmarks/fleet.py`` (5-minute steps), and keeps scraping a small
  exporter process that goes on with each service's last week, so the load is live;
- the stateful fake Kubernetes API of the tests (``tests/kubefake.py``) holds N
  Deployments and N PredictiveScalers (sync period 30 s, step 5m, 14 days of history,
  mode Scale, the seasonal quantile model or ``--model``);
- the real ``surgecast controller run`` runs as its own process against both, with
  ``--model-workers`` model processes beside it.

It reports the warm-up (until every scaler has its first model) and then a steady window
of ``--steady`` seconds: cycles run and overrun, scalers reconciled per cycle (from the
decision log: every scaler must have one decision per cycle), the controller process's
CPU (cores, model workers excluded and reported apart) and its resident memory (peak of
1 s samples). ``--refresh`` sets how often each scaler's model is refitted; at 5m every
scaler is refitted once or more in a 300 s window, so the model workers' steady load is
measured too (the controller's default is 30m).
"""

from __future__ import annotations

import argparse
import http.server
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

# The benchmark drives the test suite's fake API server: make the repository importable.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fleet import FREQ, fleet  # noqa: E402
from tests.kubefake import FakeKubeServer  # noqa: E402

STEP = pd.Timedelta(FREQ)
WEEK = int(pd.Timedelta("7D") / STEP)
SYNC = 30
METRIC = "bench_requests_per_second"
CYCLE = f'period="{SYNC}s"'
"""The sync cycles' series (not the urgent reconciles of changed specs and finished jobs)."""


# -- the live exporter (its own process) ----------------------------------------------------


def serve_exporter(data: Path, port: int) -> None:
    """Serve each service's rate now: its value one week (or two) earlier in the fleet."""
    loaded = np.load(data)
    names, week, end = list(loaded["names"]), loaded["week"], float(loaded["end"])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            at = int((time.time() - end) // STEP.total_seconds()) % WEEK
            body = "".join(
                f'{METRIC}{{service="{name}"}} {week[i, at]:.6g}\n' for i, name in enumerate(names)
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# -- setting up one fleet -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {seconds} s")


def shifted(frame: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """The fleet moved in time so its last step is ``end`` (naive UTC), as a rate per second."""
    out = frame.copy()
    out["ds"] = out["ds"] + (end - out["ds"].max())
    out["y"] = out["y"] / STEP.total_seconds()
    return out


def start_prometheus(frame: pd.DataFrame, work: Path, exporter_port: int) -> tuple[str, object]:
    """Backfill ``frame`` and start Prometheus scraping the exporter every 15 s."""
    lines = [f"# TYPE {METRIC} gauge"]
    for name, series in frame.groupby("unique_id", sort=True):
        stamps = series["ds"].to_numpy().astype("datetime64[s]").astype("int64")
        lines.extend(
            f'{METRIC}{{service="{name}"}} {value:.6g} {stamp}'
            for stamp, value in zip(stamps, series["y"].to_numpy(), strict=True)
        )
    lines.append("# EOF")
    (work / "history.om").write_text("\n".join(lines) + "\n")
    data = work / "tsdb"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", "history.om", str(data)],
        cwd=work,
        check=True,
        capture_output=True,
    )
    (work / "history.om").unlink()
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 15s}\n"
        "scrape_configs:\n"
        f"  - job_name: fleet\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=3650d",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/-/ready")
    return url, process


def scaler(name: str, prometheus: str, peak: float, model: str) -> dict:
    return {
        "apiVersion": "surgecast.dev/v1alpha1",
        "kind": "PredictiveScaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 50,
            "mode": "Scale",
            "metric": {
                "prometheusUrl": prometheus,
                "query": f'sum({METRIC}{{service="{name}"}})',
                "step": FREQ.replace("min", "m"),
            },
            "capacityPerReplica": round(max(peak / 10, 0.05), 3),
            "startupDelay": "3m",
            "model": {"name": model},
            "retrain": {"historyWindow": "14d"},
            "behavior": {"syncPeriod": f"{SYNC}s"},
        },
    }


def deployment(name: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}},
        "status": {"replicas": 1},
    }


def kubeconfig(path: Path, server: str) -> None:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: fake, user: {}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: fake}}]\n"
    )


# -- measuring ------------------------------------------------------------------------------


def metric(url: str, name: str, labels: str = "") -> float:
    """The sum of the series of ``name`` whose labels contain ``labels`` (0 when absent)."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    pattern = re.compile(rf"^{re.escape(name)}(?:{{([^}}]*)}})? (\S+)$", re.M)
    return sum(float(value) for found, value in pattern.findall(text) if labels in found)


def trained(api: FakeKubeServer, names: list[str]) -> int:
    count = 0
    for name in names:
        conditions = api.state.get("predictivescalers", "fleet", name).get("status", {})
        if any(
            c["type"] == "ModelTrained" and c["status"] == "True"
            for c in conditions.get("conditions", [])
        ):
            count += 1
    return count


def decisions_per_scaler(db: Path, since: pd.Timestamp, until: pd.Timestamp) -> pd.Series:
    with sqlite3.connect(db) as connection:
        frame = pd.read_sql_query("SELECT scaler, at FROM decisions", connection)
    at = pd.to_datetime(frame["at"], utc=True, format="mixed").dt.tz_localize(None)
    inside = frame[(at >= since) & (at < until)]
    return inside.groupby("scaler").size()


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def children_cpu(process: psutil.Process) -> float:
    """CPU seconds of the model workers, those replaced already included."""
    reaped = process.cpu_times()
    total = reaped.children_user + reaped.children_system
    for child in process.children(recursive=True):
        try:
            total += cpu_seconds(child)
        except psutil.NoSuchProcess:
            pass
    return total


def run_size(
    size: int, everyone: pd.DataFrame, args: argparse.Namespace, work: Path
) -> dict[str, float]:
    work.mkdir(parents=True)
    names = sorted(everyone["unique_id"].unique())[:size]
    end = pd.Timestamp.now(tz="UTC").tz_localize(None).floor(STEP)
    frame = shifted(everyone[everyone["unique_id"].isin(names)], end)
    frame["unique_id"] = frame["unique_id"].str.lower()
    names = [name.lower() for name in names]
    week = np.stack([g["y"].to_numpy()[-WEEK:] for _, g in frame.groupby("unique_id")])
    np.savez(work / "week.npz", names=np.array(names), week=week, end=end.timestamp())
    exporter_port = free_port()
    exporter = subprocess.Popen(
        [sys.executable, __file__, "exporter", str(work / "week.npz"), str(exporter_port)]
    )
    processes: list[object] = [exporter]
    try:
        prometheus, prom_process = start_prometheus(frame, work, exporter_port)
        processes.append(prom_process)
        peaks = frame.groupby("unique_id")["y"].max()
        with FakeKubeServer() as api:
            for name in names:
                api.state.put("deployments", "fleet", deployment(name))
                api.state.put(
                    "predictivescalers", "fleet", scaler(name, prometheus, peaks[name], args.model)
                )
            kubeconfig(work / "kubeconfig", f"http://127.0.0.1:{api.server.server_address[1]}")
            port = free_port()
            db = work / "decisions.db"
            controller = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("surgecast")),
                    "controller",
                    "run",
                    "--kubeconfig",
                    str(work / "kubeconfig"),
                    "--lease-namespace",
                    "surgecast-system",
                    "--port",
                    str(port),
                    "--model-dir",
                    str(work / "models"),
                    "--decision-log",
                    f"sqlite:///{db}",
                    "--model-workers",
                    str(args.model_workers),
                    "--refresh",
                    args.refresh,
                    "--log-level",
                    "WARNING",
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(work / "controller.log", "wb"),  # noqa: SIM115
                # As the image runs it (deploy/Dockerfile).
                env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"},
            )
            processes.append(controller)
            return measure(controller, api, names, f"http://127.0.0.1:{port}/metrics", db, args)
    finally:
        for process in reversed(processes):
            process.terminate()  # type: ignore[attr-defined]
            try:
                process.wait(timeout=30)  # type: ignore[attr-defined]
            except subprocess.TimeoutExpired:
                process.kill()  # type: ignore[attr-defined]


def measure(
    controller: subprocess.Popen[bytes],
    api: FakeKubeServer,
    names: list[str],
    metrics: str,
    db: Path,
    args: argparse.Namespace,
) -> dict[str, float]:
    began = time.monotonic()
    me = psutil.Process(controller.pid)
    wait_http(metrics.replace("/metrics", "/readyz"), seconds=120)
    while trained(api, names) < len(names):
        if controller.poll() is not None:
            raise RuntimeError(f"the controller exited with {controller.returncode}")
        if time.monotonic() - began > args.warmup_limit:
            break
        time.sleep(2)
    warm = time.monotonic() - began
    have_models = trained(api, names)

    cpu0, workers0 = cpu_seconds(me), children_cpu(me)
    cycles0 = metric(metrics, "surgecast_cycle_duration_seconds_count", CYCLE)
    took0 = metric(metrics, "surgecast_cycle_duration_seconds_sum", CYCLE)
    overruns0 = metric(metrics, "surgecast_cycle_overruns_total")
    since = pd.Timestamp.now(tz="UTC").tz_localize(None)
    start, peak_rss, peak_workers = time.monotonic(), 0, 0
    while time.monotonic() - start < args.steady:
        peak_rss = max(peak_rss, me.memory_info().rss)
        workers = sum(c.memory_info().rss for c in me.children(recursive=True))
        peak_workers = max(peak_workers, workers)
        time.sleep(1)
    wall = time.monotonic() - start
    until = pd.Timestamp.now(tz="UTC").tz_localize(None)
    cycles = metric(metrics, "surgecast_cycle_duration_seconds_count", CYCLE) - cycles0
    per_scaler = decisions_per_scaler(db, since, until).reindex(
        [f"fleet/{n}" for n in names], fill_value=0
    )
    return {
        "warm": warm,
        "models": have_models,
        "cycles": cycles,
        "cycle_s": (metric(metrics, "surgecast_cycle_duration_seconds_sum", CYCLE) - took0)
        / max(cycles, 1),
        "overruns": metric(metrics, "surgecast_cycle_overruns_total") - overruns0,
        "min_decisions": int(per_scaler.min()),
        "expected": wall / SYNC,
        "cores": (cpu_seconds(me) - cpu0) / wall,
        "worker_cores": (children_cpu(me) - workers0) / wall,
        "rss_mib": peak_rss / 2**20,
        "workers_mib": peak_workers / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="Fleet sizes, comma-separated.")
    parser.add_argument("--steady", type=float, default=300, help="Seconds measured, warm.")
    parser.add_argument("--warmup-limit", type=float, default=1800, help="Most seconds to wait.")
    parser.add_argument("--model-workers", type=int, default=2)
    parser.add_argument(
        "--model",
        default="seasonal_quantile",
        help="Every scaler's spec.model.name (auto backtests every fast model per scaler).",
    )
    parser.add_argument("--refresh", default="5m", help="Refit period of each scaler's model.")
    parser.add_argument("--cache", type=Path, default=None, help="Keep generated fleets here.")
    args = parser.parse_args()
    missing = [name for name in ("prometheus", "promtool") if shutil.which(name) is None]
    if missing:
        sys.exit(f"{' and '.join(missing)} not installed: run scripts/test-services.sh prometheus")
    sizes = [int(s) for s in args.sizes.split(",")]
    cache = args.cache or Path(tempfile.mkdtemp(prefix="surgecast-fleet-"))
    cache.mkdir(parents=True, exist_ok=True)
    everyone = fleet(max(sizes), cache, os.cpu_count() or 1)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at start"
    )
    print(
        f"sync {SYNC} s, step {FREQ}, 14 days of history, model {args.model}, refit every "
        f"{args.refresh}, {args.model_workers} model worker process(es); steady window "
        f"{args.steady:.0f} s after warm-up\n"
    )
    header = (
        f"{'scalers':>7} {'warm-up s':>9} {'models':>7} {'cycles':>6} {'cycle s':>7} "
        f"{'overruns':>8} {'min decisions':>13} {'cores':>6} {'RSS MiB':>8} "
        f"{'worker cores':>12} {'worker MiB':>10}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="surgecast-fleet-controller-") as tmp:
        for size in sizes:
            r = run_size(size, everyone, args, Path(tmp) / str(size))
            print(
                f"{size:>7} {r['warm']:>9.0f} {r['models']:>7} {r['cycles']:>6.0f} "
                f"{r['cycle_s']:>7.2f} {r['overruns']:>8.0f} "
                f"{r['min_decisions']:>6} of {r['expected']:>4.1f} {r['cores']:>6.2f} "
                f"{r['rss_mib']:>8.0f} {r['worker_cores']:>12.2f} {r['workers_mib']:>10.0f}",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "exporter":
        serve_exporter(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
