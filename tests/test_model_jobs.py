"""Model work off the reconcile path (:mod:`controller.modelling`): a reconcile never waits
for training, a job's result is installed at the next reconcile, a worker killed mid-job
costs a retry and nothing else, and every executor produces the same forecast.

Real worker processes and a real Dask cluster; the reconciles run in virtual time.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import Executor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import threadpoolctl

from controller.modelling import InlineExecutor, ModelJob, WorkerPool, run_job, store_url
from controller.policy import nowcast
from controller.prometheus import HistoryCache, PrometheusClient
from controller.reconciler import JOB_RETRY, LEVEL_WINDOW, Reconciler
from controller.spec import ScalerConfig, parse_scaler
from forecaster import store
from forecaster.engine import DaskEngine
from forecaster.models import LastValue
from tests.kubefake import FakeKubeServer
from tests.prom_server import prom  # noqa: F401 (the session fixture)
from tests.test_controller_e2e import DEPLOYMENT, START, scaler
from tests.test_controller_runner import wait_for
from tests.test_faults import reconciler


@pytest.fixture
def api():
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", DEPLOYMENT)
        yield server


def with_executor(api: FakeKubeServer, tmp_path, executor: Executor) -> Reconciler:
    rec = reconciler(api, tmp_path)
    rec.executor = executor
    return rec


def reconcile(api: FakeKubeServer, rec: Reconciler, minutes: int = 0):
    obj = copy.deepcopy(api.state.get("predictivescalers", "gov", "portal"))
    return rec.reconcile(obj, START + timedelta(minutes=minutes))


def status(api: FakeKubeServer) -> dict:
    return api.state.get("predictivescalers", "gov", "portal")["status"]


def conditions(api: FakeKubeServer) -> dict[str, dict]:
    return {c["type"]: c for c in status(api)["conditions"]}


def events(api: FakeKubeServer, reason: str) -> list[dict]:
    return [c.body for c in api.state.calls("POST", "/events") if c.body["reason"] == reason]


def test_a_reconcile_does_not_wait_for_training(api, prom, tmp_path) -> None:  # noqa: F811
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    with WorkerPool(1) as pool:
        rec = with_executor(api, tmp_path, pool)
        started = time.monotonic()
        first = reconcile(api, rec)
        took = time.monotonic() - started
        # A fresh worker process alone takes longer to start than this reconcile took.
        assert rec.jobs == 1, took
        assert first.fallback == "ForecastMissing"
        assert conditions(api)["ModelTrained"]["status"] == "False"
        assert conditions(api)["Fallback"]["reason"] == "ForecastMissing"

        wait_for(lambda: rec.states["gov/portal"].job.done(), seconds=60)
        reconcile(api, rec, minutes=1)
        assert rec.jobs == 0
        assert conditions(api)["ModelTrained"]["status"] == "True"
        assert conditions(api)["Fallback"]["status"] == "False"
        assert status(api)["model"]["name"] == "seasonal_quantile"
        assert len(events(api, "ModelTrained")) == 1

        reconcile(api, rec, minutes=2)  # fresh forecast: no new job
        assert rec.jobs == 0


def test_a_model_worker_computes_on_one_thread(monkeypatch) -> None:
    """OpenMP loaded by a fit and BLAS loaded at start-up both run one thread per worker,
    whatever the controller's own environment says (conftest sets one for the CLIs)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with WorkerPool(1) as pool:
        pool.submit(exec, "import sklearn.ensemble").result(timeout=60)
        libraries = pool.submit(threadpoolctl.threadpool_info).result(timeout=60)
    apis = {lib["user_api"] for lib in libraries}
    assert {"openmp", "blas"} <= apis, libraries
    assert [lib["num_threads"] for lib in libraries] == [1] * len(libraries), libraries


def test_a_worker_killed_mid_job_is_retried_once_and_nothing_doubles(
    api,
    prom,  # noqa: F811
    tmp_path,
) -> None:
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    with WorkerPool(1) as pool:
        rec = with_executor(api, tmp_path, pool)
        others = set(multiprocessing.active_children())
        reconcile(api, rec)
        (worker,) = set(multiprocessing.active_children()) - others
        os.kill(worker.pid, signal.SIGKILL)
        wait_for(lambda: rec.states["gov/portal"].job.done(), seconds=60)

        reconcile(api, rec, minutes=1)
        (failed,) = events(api, "ModelTrainingFailed")
        assert "BrokenProcessPool" in failed["message"]
        assert conditions(api)["ModelTrained"]["status"] == "False"
        assert rec.jobs == 0

        reconcile(api, rec, minutes=2)  # too soon to try again
        assert rec.jobs == 0

        retry = int(JOB_RETRY / timedelta(minutes=1)) + 1
        reconcile(api, rec, minutes=retry)  # a new pool takes the job
        assert rec.jobs == 1
        wait_for(lambda: rec.states["gov/portal"].job.done(), seconds=60)
        reconcile(api, rec, minutes=retry + 1)
        assert conditions(api)["ModelTrained"]["status"] == "True"
    assert len(events(api, "ModelTrained")) == 1
    stored = [p for p in (tmp_path / "models" / "gov" / "portal").iterdir() if p.is_dir()]
    assert len(stored) == 1


@pytest.mark.slow
def test_inline_processes_and_dask_give_the_same_forecast(prom, tmp_path) -> None:  # noqa: F811
    """The job carries everything it needs: where it runs cannot change its answer."""
    config = parse_scaler(
        {
            **scaler(prom.url, "Scale", model={"name": "auto"}),
            "metadata": {"name": "p", "namespace": "gov"},
        }
    )
    client = PrometheusClient(prom.url)
    history = HistoryCache().get(
        client, config.query, START, config.history_window, config.step, config.key
    )
    job = ModelJob("train", config, history, START, outlook=True)
    results = []
    with WorkerPool(1) as pool, DaskEngine(n_workers=1) as engine:
        for executor in (InlineExecutor(), pool, engine.client.get_executor(pure=False)):
            results.append(executor.submit(run_job, job).result(timeout=300))
    inline = results[0]
    for other in results[1:]:
        assert other.model.name == inline.model.name
        np.testing.assert_array_equal(other.forecast.times, inline.forecast.times)
        np.testing.assert_allclose(other.forecast.upper, inline.forecast.upper, rtol=1e-12)
        assert other.outlook is not None and inline.outlook is not None
        assert other.outlook.hours.equals(inline.outlook.hours)


@pytest.mark.parametrize(("hold_out", "rescaled"), [(LEVEL_WINDOW, True), (timedelta(0), False)])
def test_the_held_out_hours_let_the_nowcast_run(prom, hold_out, rescaled) -> None:  # noqa: F811
    """The policy rescales the forecast by the load of the last two hours only if the
    forecast covers them: the model is fitted on history up to two hours ago."""
    config = parse_scaler(
        {**scaler(prom.url, "Scale"), "metadata": {"name": "p", "namespace": "gov"}}
    )
    history = HistoryCache().get(
        PrometheusClient(prom.url),
        config.query,
        START,
        config.history_window,
        config.step,
        config.key,
    )
    result = run_job(ModelJob("start", config, history, START, hold_out=hold_out))
    first = np.datetime64(START.replace(tzinfo=None) - hold_out + timedelta(minutes=1), "ns")
    assert result.forecast.times[0] == first
    window = int(LEVEL_WINDOW / config.step)
    recent = history["y"].to_numpy()[-window:-1]
    scaled = nowcast(result.forecast, START, recent, (0.5, 4.0))
    assert (scaled is not result.forecast) == rescaled


BILLING = 'sum(rate(http_requests_total{service="billing"}[2m]))'
PORTAL = 'sum(rate(http_requests_total{service="portal"}[2m]))'


def portal_config(uid: str, query: str) -> ScalerConfig:
    """gov/portal at generation 1, as after every ``kubectl apply`` of a new object."""
    obj = scaler("http://prom:9090", "Scale", model={"name": "last_value"})
    obj["metadata"] = {"namespace": "gov", "name": "portal", "generation": 1, "uid": uid}
    obj["spec"]["metric"]["query"] = query
    return parse_scaler(obj)


def flat_history(config: ScalerConfig, level: float) -> pd.DataFrame:
    ds = pd.date_range(end=START.replace(tzinfo=None), periods=3 * 24 * 60, freq="1min")
    return pd.DataFrame({"unique_id": config.key, "ds": ds, "y": level})


def start_job(config: ScalerConfig, level: float, root: Path) -> ModelJob:
    """What a controller starting five minutes after the last training asks for."""
    now = START + timedelta(minutes=5)
    return ModelJob("start", config, flat_history(config, level), now, model_store=str(root))


@pytest.mark.parametrize(
    ("uid", "query", "reused"),
    [
        ("3c1f", BILLING, True),  # a restarted controller: the same object
        ("9a7e", PORTAL, False),  # deleted and created again for another service
        ("9a7e", BILLING, False),  # created again: the same query, but a new object
        ("3c1f", PORTAL, False),  # the query alone differs
    ],
)
def test_a_stored_model_serves_only_the_object_and_query_it_learned(
    tmp_path, uid: str, query: str, reused: bool
) -> None:
    """Name and generation do not identify a scaler: one deleted and applied again starts
    at generation 1 again, and the old service's 40 rps model must not scale a 2 rps one."""
    billing = portal_config("3c1f", BILLING)
    assert run_job(
        ModelJob("train", billing, flat_history(billing, 40.0), START, model_store=str(tmp_path))
    ).trained
    level = 40.0 if query == BILLING else 2.0
    result = run_job(start_job(portal_config(uid, query), level, tmp_path))
    assert result.trained is not reused
    assert result.forecast.upper.max() == pytest.approx(level)


def test_a_model_stored_before_uids_were_recorded_is_trained_again(tmp_path, caplog) -> None:
    """Such a model cannot say which object it served, so it is not trusted."""
    config = portal_config("3c1f", PORTAL)
    history = flat_history(config, 40.0)
    old_metadata = {
        "scaler": config.key,
        "generation": 1,
        "model_name": "last_value",
        "step": "60s",
    }
    models = {"last_value": LastValue().fit(history)}
    store.save(
        models, store_url(str(tmp_path), config), old_metadata, store.fingerprint(history), START
    )
    with caplog.at_level(logging.INFO, logger="surgecast.modelling"):
        result = run_job(start_job(config, 2.0, tmp_path))
    assert result.trained and result.forecast.upper.max() == pytest.approx(2.0)
    assert "records no scaler uid" in caplog.text


def test_a_query_that_returns_nothing_trains_no_model(tmp_path) -> None:
    """Prometheus answers ``sum(rate(mistyped_total[5m]))`` with no series: the history is
    all missing, and a model of it forecast zero and reported ModelTrained=True."""
    config = portal_config("3c1f", PORTAL)
    history = flat_history(config, 0.0).assign(y=np.nan)
    with pytest.raises(ValueError, match="the query returned no data in the history window"):
        run_job(ModelJob("train", config, history, START, model_store=str(tmp_path)))


def test_a_model_stored_by_a_clock_that_runs_ahead_is_taken_as_made_now(tmp_path, caplog) -> None:
    """Its ``created_at`` an hour ahead, it counted as fresh until the clocks agreed: status
    showed a future ``trainedAt``, the model-age metric went negative, and it was reused
    for a day and an hour."""
    config = portal_config("3c1f", PORTAL)
    ahead = START + timedelta(hours=1)  # the replica that trained it
    run_job(ModelJob("train", config, flat_history(config, 40.0), ahead, model_store=str(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="surgecast.modelling"):
        result = run_job(start_job(config, 40.0, tmp_path))
    now = START + timedelta(minutes=5)
    assert not result.trained and result.model.trained_at == now
    assert "runs ahead" in caplog.text and "0:55:00 after now" in caplog.text

    # Seconds ahead are the clocks' usual disagreement: made now, and nothing to say.
    caplog.clear()
    run_job(ModelJob("train", config, flat_history(config, 40.0), now, model_store=str(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="surgecast.modelling"):
        result = run_job(
            replace(start_job(config, 40.0, tmp_path), now=now - timedelta(seconds=20))
        )
    assert result.model.trained_at == now - timedelta(seconds=20) and not caplog.text
