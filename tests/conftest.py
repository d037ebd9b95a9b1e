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
    """The session's Dask client with both its workers (no test that uses it ends a worker)."""
    dask_cluster.wait_for_workers(2, timeout=60)
    return dask_cluster


@pytest.fixture
def disposable_dask_workers():
    """A Dask client of two fresh workers for one test that ends workers: their nannies' restarts (a
    fresh worker imports torch again, slow on a busy machine) never hold up the other tests."""
    from lib.reproduce import dask_client

    with dask_client(cluster="local", workers=2) as client:
        yield client
