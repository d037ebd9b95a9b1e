"""The results cache: every run's result stored under a name derived from its full configuration.

A run's file is ``results/<experiment>/<key>.json`` where ``key`` hashes the run's configuration (a
plain dict: benchmark, architecture, training protocol, every hyperparameter, the seed) together with
the library version (:func:`config_key`). The file holds the configuration, the version, the machine
that trained and the result. Files are written atomically (:func:`lib.data.write_atomic`), so an
interrupted sweep resumes from the runs already stored and never reads a half-written file. A run
may keep arrays beside its result, ``<key>.npz`` (:func:`store_arrays`). ``PRESYN_RESULTS`` moves
the folder.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
from pathlib import Path
from typing import Iterator

import numpy as np

from . import __version__
from .data import write_atomic

ENV_VAR = "PRESYN_RESULTS"
STORED_RESULTS = Path(__file__).resolve().parent.parent / "results"  # the committed paper-scale runs
TIMINGS = "benchmarks"  # the folder of timing records in a results folder: not runs


def results_root() -> Path:
    """``$PRESYN_RESULTS`` or ``results/`` in the repository."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else STORED_RESULTS


def config_key(config: dict) -> str:
    """A short, stable name for a configuration (and the library version that ran it): the first 16 hex
    digits of the SHA-256 of ``{"config": config, "version": version}`` as JSON with sorted keys."""
    text = json.dumps({"config": config, "version": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(experiment: str, config: dict) -> Path:
    """Where the run of ``config`` of ``experiment`` is stored."""
    return results_root() / experiment / f"{config_key(config)}.json"


def load_cached(experiment: str, config: dict) -> dict | None:
    """The stored result of ``config``, or None (also when the stored configuration differs)."""
    path = cache_path(experiment, config)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored["result"] if stored.get("config") == json.loads(json.dumps(config)) else None


def machine() -> str:
    """The device that trains here, in words (stored with every result). A CPU is named by its model
    where the system says it: the same run trained on two CPU models may differ in its last digits
    (their vector units round the compiled step's sums in another order)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{_cpu_model() or platform.machine() + ' CPU'}, {os.cpu_count()} cores"


def _cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), or None."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def store(experiment: str, config: dict, result: dict) -> Path:
    """Write a run's result beside its configuration, the library version and the machine, atomically."""
    path = cache_path(experiment, config)
    payload = {"config": config, "version": __version__, "machine": machine(), "result": result}
    write_atomic(path, json.dumps(payload, indent=1, sort_keys=True).encode())
    return path


def store_arrays(experiment: str, config: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Keep named arrays of a run (e.g. its final network) beside its result, as ``<key>.npz``, atomically."""
    path = cache_path(experiment, config).with_suffix(".npz")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
    return path


def load_arrays(experiment: str, config: dict) -> dict[str, np.ndarray] | None:
    """The arrays :func:`store_arrays` kept for ``config``, or None."""
    path = cache_path(experiment, config).with_suffix(".npz")
    if not path.is_file():
        return None
    with np.load(path) as stored:
        return dict(stored.items())


def stored_runs(root: Path | None = None) -> Iterator[tuple[str, Path, dict]]:
    """Every run stored under ``root`` (default :func:`results_root`) as ``(experiment, path, payload)``,
    experiments and files in name order; the timing records of ``benchmarks/`` are not runs."""
    root = results_root() if root is None else Path(root)
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != TIMINGS):
        for path in sorted(folder.glob("*.json")):
            yield folder.name, path, json.loads(path.read_text())


def misnamed_runs(root: Path | None = None) -> list[Path]:
    """The stored runs whose file name is not the key of the configuration they hold: runs that
    :func:`load_cached` would not find under their own configuration (empty when all load)."""
    return [path for _, path, payload in stored_runs(root)
            if "config" not in payload or "result" not in payload or config_key(payload["config"]) != path.stem]


def _flat(value, prefix: str) -> dict:
    """A nested configuration as ``{"a.b": value}``; lists become tuples (hashable column values)."""
    if isinstance(value, dict):
        return {k: v for key in sorted(value) for k, v in _flat(value[key], f"{prefix}.{key}" if prefix else key).items()}
    return {prefix: tuple(value) if isinstance(value, list) else value}


TRACES = ("train_loss", "mean_p", "frozen")  # results kept per epoch or per task: their last value is final


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _final_metrics(result: dict, prefix: str = "result", depth: int = 0) -> dict:
    """The final numbers of a stored result: every number, at any depth, as it is, and the last value
    of each trace (:data:`TRACES`, a list of numbers over epochs or tasks) as ``name[-1]``; matrices,
    histograms and curves are left out."""
    metrics = {}
    for key in sorted(result):
        name, value = f"{prefix}.{key}", result[key]
        if _is_number(value):
            metrics[name] = value
        elif isinstance(value, dict):
            metrics |= _final_metrics(value, name, depth + 1)
        elif depth == 0 and key in TRACES and isinstance(value, list) and value and all(map(_is_number, value)):
            metrics[f"{name}[-1]"] = value[-1]
    return metrics


def results_records(root: Path | None = None) -> list[dict]:
    """Every stored run (:func:`stored_runs`) as one flat record: ``experiment``, ``key``, ``version``,
    ``machine``, the configuration's fields under their dotted paths (``run.seed``, ``protocol.epochs``)
    and the result's final numbers under ``result.`` (e.g. ``result.average``, ``result.train_loss[-1]``)."""
    return [{"experiment": experiment, "key": path.stem, "version": payload.get("version"),
             "machine": payload.get("machine"), **_flat(payload["config"], ""), **_final_metrics(payload["result"])}
            for experiment, path, payload in stored_runs(root)]


def results_frame(root: Path | None = None):
    """:func:`results_records` as a pandas DataFrame, one row per stored run (columns that a run lacks are
    empty), e.g. ``results_frame().query("experiment == 'lifelong'").groupby("method")["result.average"].mean()``."""
    import pandas as pd

    return pd.DataFrame(results_records(root))
