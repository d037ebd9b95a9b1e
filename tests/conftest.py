"""Test-session set-up: runs trained by the tests (the notebook smoke runs too) never touch results/."""
import os
import tempfile

from lib.experiments import ENV_VAR


def pytest_configure(config):
    os.environ[ENV_VAR] = tempfile.mkdtemp(prefix="presyn-test-results-")
