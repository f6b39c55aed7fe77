"""Fleet engine, model store and fleet training at their edges: what a user training hundreds
of services, and a controller loading the artefacts, ran into."""

from __future__ import annotations

import gc

import dask
import pytest
from distributed import Client

from forecaster.engine import open_engine


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1x", "nosuch://127.0.0.1:8786"])
def test_a_scheduler_address_that_fails_leaves_no_client_running(address: str) -> None:
    """A malformed port or an unknown protocol left a half-started Client "connecting" (its
    ``__del__`` at interpreter exit waited 60 s for a stopped event loop: the hang seen after
    the engine tests) and Dask's global scheduler set to ``dask.distributed``, so any later
    Dask computation in the process started a hidden LocalCluster."""
    before = dask.config.get("scheduler", None)
    gc.disable()  # as at exit: the collector, not the test, would have closed the client
    try:
        with pytest.raises(ValueError, match="--scheduler"):
            open_engine("dask", scheduler=address).__enter__()
        assert dask.config.get("scheduler", None) == before
        left = [
            c
            for c in gc.get_objects()
            if isinstance(c, Client) and c._start_arg == address and c.status != "closed"
        ]
    finally:
        gc.enable()
    assert left == []
