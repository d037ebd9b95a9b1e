"""Test-session set-up: runs trained by the tests (the notebook smoke runs too) never touch results/; a Dask cluster
for the tests of ``make reproduce``."""
import os
import tempfile

import pytest

from lib.cache import ENV_VAR


def pytest_configure(config):
    os.environ[ENV_VAR] = tempfile.mkdtemp(prefix="presyn-test-results-")


@pytest.fixture(scope="session")
def dask_cluster():
    """A local Dask cluster of two single-threaded worker processes, started once for the whole session."""
    from lib.reproduce import dask_client

    with dask_client(cluster="local", workers=2) as client:
        yield client


@pytest.fixture
def dask_workers(dask_cluster):
    """The session's Dask client once both its workers run (a test may have ended a worker: its nanny
    starts a fresh one)."""
    dask_cluster.wait_for_workers(2, timeout=300)  # a fresh worker imports torch again: slow on a busy machine
    return dask_cluster
