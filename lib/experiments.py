"""Experiments as plain configurations, with every run's result cached under a name derived from it.

A run's cache file is ``results/<experiment>/<key>.json`` where ``key`` hashes the full configuration
(benchmark, architecture, training protocol, every hyperparameter of the run, its seed) together with
the library version. Files are written atomically, so an interrupted sweep resumes from the runs
already stored and never reads a half-written file. ``PRESYN_RESULTS`` moves the folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy import stats

from . import __version__
from . import analysis
from .data import write_atomic
from .model import StochasticMLP, SynapseConfig, deterministic, fixed_release, presynaptic
from .tasks import make_benchmark
from .train import default_device, fit

ENV_VAR = "PRESYN_RESULTS"
STORED_RESULTS = Path(__file__).resolve().parent.parent / "results"  # the committed paper-scale runs
ENERGY_MODELS = ("presynaptic", "fixed", "deterministic")
PAPER_WEIGHT_DECAYS = (0.0, 0.001, 0.005, 0.01, 0.05, 0.1)


def results_root() -> Path:
    """``$PRESYN_RESULTS`` or ``results/`` in the repository."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else STORED_RESULTS


def config_key(config: dict) -> str:
    """A short, stable name for a configuration (and the library version that ran it)."""
    text = json.dumps({"config": config, "version": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(experiment: str, config: dict) -> Path:
    return results_root() / experiment / f"{config_key(config)}.json"


def load_cached(experiment: str, config: dict) -> dict | None:
    """The stored result of ``config``, or None (also when the stored configuration differs)."""
    path = cache_path(experiment, config)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored["result"] if stored.get("config") == json.loads(json.dumps(config)) else None


def machine() -> str:
    """The device that trains here, in words (stored with every result)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def store(experiment: str, config: dict, result: dict) -> Path:
    """Write a run's result beside its configuration, the library version and the machine, atomically."""
    path = cache_path(experiment, config)
    payload = {"config": config, "version": __version__, "machine": machine(), "result": result}
    write_atomic(path, json.dumps(payload, indent=1, sort_keys=True).encode())
    return path


# ---------------------------------------------------------------------------------------- energy
@dataclass(frozen=True)
class EnergyProtocol:
    """What all runs of the energy experiment share (``exp_energy.sh``, ``etc/dyn_mnist_energy.json``)."""

    benchmark: str = "mnist"
    sizes: tuple[int, ...] = (784, 200, 200, 10)
    epochs: int = 50
    batch_size: int = 100
    eval_samples: int = 10
    subset: int | None = None


def energy_run(model: str, weight_decay: float, seed: int, fixed_p: float = 0.4, p_init: float = 0.25) -> SynapseConfig:
    """One run of Fig. 1: ``model`` is presynaptic, fixed (release probability ``fixed_p``) or deterministic.

    Learning rates of the authors' configs: 0.05 (presynaptic and fixed), 0.08 (deterministic).
    ``p_init`` is the presynaptic model's initial release probability (0.25; Fig. 2a robustness check).
    """
    if model not in ENERGY_MODELS:
        raise ValueError(f"unknown model {model!r}; valid models: {', '.join(ENERGY_MODELS)}")
    if weight_decay < 0:
        raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
    if model == "presynaptic":
        return presynaptic(seed=seed, weight_decay=weight_decay, p_init=p_init)
    if model == "fixed":
        return fixed_release(fixed_p, seed=seed, weight_decay=weight_decay)
    return deterministic(seed=seed, weight_decay=weight_decay)


def _run_config(protocol: EnergyProtocol, run: SynapseConfig) -> dict:
    return {"protocol": asdict(protocol), "run": run.describe()}


def run_energy(
    runs: Sequence[SynapseConfig], protocol: EnergyProtocol = EnergyProtocol(), *, progress: bool | None = None,
    save_state: bool = True, cache: bool = True, force: bool = False, train: bool = True,
) -> list[dict | None]:
    """Train every run not yet in the cache (all together, batched) and return every run's result.

    ``train=False`` trains nothing: runs not in the cache come back as ``None``.
    ``cache=False`` trains every run and stores nothing (smoke runs leave the cache alone);
    ``force=True`` trains and stores every run again (e.g. to regenerate a final state that the
    cache lacks: the ``.npz`` states are not kept in the repository, only the results).

    Each result holds the final test accuracy, mutual information (bits), synaptic energy
    :math:`\\sum|\\bar w|`, activity energy, mean release probability, fraction of synapses with
    :math:`p \\ge 0.9` and training loss per epoch.
    With ``save_state`` the final :math:`\\bar w` and :math:`p` of stochastic runs are kept beside the
    result as ``<key>.npz`` for the analyses of chapters 3 and 4.
    """
    configs = [_run_config(protocol, r) for r in runs]
    todo = [r for r, c in zip(runs, configs) if force or not cache or load_cached("energy", c) is None]
    fresh: dict[str, dict] = {}
    if todo and train:
        device = default_device()
        bench = make_benchmark(protocol.benchmark, subset=protocol.subset, device=device)
        net = StochasticMLP(protocol.sizes, todo, device=device)
        hist = fit(net, bench, epochs=protocol.epochs, batch_size=protocol.batch_size, eval_every="end",
                   eval_samples=protocol.eval_samples, progress=progress)
        for r, run in enumerate(todo):
            config = _run_config(protocol, run)
            result = {
                "accuracy": float(hist.accuracy[r, -1, 0]),
                "mutual_information": float(hist.mutual_information[r, -1, 0]),
                "energy": float(hist.energy[r, -1]),
                "activity": float(hist.activity[r, -1, 0]),
                "mean_p": float(hist.mean_p[r, -1]),
                "fraction_important": analysis.fraction_important([p[r] for p in net.probs]),
                "train_loss": hist.train_loss[r].tolist(),
                "seconds": hist.seconds / len(todo),
            }
            fresh[config_key(config)] = result
            if not cache:
                continue
            if save_state and run.stochastic:
                layers = (("w", net.weights), ("b", net.biases), ("p", net.probs))
                state = {f"{name}{i}": t[r].cpu().numpy() for name, ts in layers for i, t in enumerate(ts)}
                write_atomic(cache_path("energy", config).with_suffix(".npz"), _npz_bytes(state))
            store("energy", config, result)
    return [fresh.get(config_key(c)) or load_cached("energy", c) for c in configs]


def energy_sweep(
    model: str, weight_decays: Sequence[float], seeds: Sequence[int], protocol: EnergyProtocol = EnergyProtocol(),
    fixed_p: Mapping[float, float] | None = None, *, progress: bool | None = None, train: bool = True,
) -> list[dict | None]:
    """The results of ``model`` at every (lambda, seed), lambda-major, from the cache or trained as one batch.

    ``fixed_p[lambda]`` is the fixed model's release probability at that lambda (default 0.4, the
    authors' code); see :func:`matched_release` for the value chapter 2 uses. ``train=False``: see
    :func:`run_energy`.
    """
    runs = [energy_run(model, wd, s, (fixed_p or {}).get(wd, 0.4)) for wd in weight_decays for s in seeds]
    return run_energy(runs, protocol, progress=progress, train=train)


def matched_release(weight_decays: Sequence[float], presynaptic_results: Sequence[dict]) -> dict[float, float]:
    """Per lambda, the presynaptic model's final mean release probability, averaged over its seeds and
    rounded to 3 decimals: the fixed model of Fig. 1 releases with this probability.

    ``presynaptic_results`` are :func:`energy_sweep`'s results of the presynaptic model (lambda-major).
    """
    mean_p = np.array([r["mean_p"] for r in presynaptic_results]).reshape(len(weight_decays), -1).mean(1)
    return {wd: round(float(m), 3) for wd, m in zip(weight_decays, mean_p)}


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def load_state(run: SynapseConfig, protocol: EnergyProtocol = EnergyProtocol()) -> dict[str, list[torch.Tensor]] | None:
    """Final expected weights, biases and release probabilities of a cached stochastic run, or None."""
    path = cache_path("energy", _run_config(protocol, run)).with_suffix(".npz")
    if not path.is_file():
        return None
    with np.load(path) as f:
        n = sum(k.startswith("w") for k in f.files)
        return {name: [torch.from_numpy(f[f"{key}{i}"]) for i in range(n)]
                for name, key in (("weights", "w"), ("biases", "b"), ("probs", "p"))}


# ---------------------------------------------------------------------------------------- analyses
LESION_FRACTIONS = tuple(round(0.1 * k, 1) for k in range(10))  # 0 (intact), 0.1, ..., 0.9
P_BINS = np.linspace(0.25, 1.0, 31)
LOG_W_BINS = np.linspace(-7.0, 0.0, 57)  # log10 |wbar|
LOG_F_BINS = np.linspace(-14.0, 0.0, 57)  # log10 Fisher information


def _histogram(values: torch.Tensor, bins: np.ndarray) -> list[float]:
    """Fractions of ``values`` in each bin (values outside the range are clipped into the end bins)."""
    v = np.clip(values.numpy().ravel(), bins[0], bins[-1])
    counts, _ = np.histogram(v, bins)
    return (counts / max(v.size, 1)).tolist()


def analyse_energy_run(run: SynapseConfig, protocol: EnergyProtocol = EnergyProtocol(), *, cache: bool = True,
                       n_samples: int = 10, train: bool = True) -> dict | None:
    """Chapters 3 and 4 on one trained presynaptic run: sparsity, lesions, neurons, Fisher information.

    Trains the run first if its final state is not stored. The result (cached in
    ``results/analysis``) holds histograms of :math:`p` (bins :data:`P_BINS`), of
    :math:`\\log_{10}|\\bar w|` and of :math:`\\log_{10} F` for important (:math:`p \\ge 0.9`) and other
    synapses, lesion curves at :data:`LESION_FRACTIONS` for every order of
    :func:`lib.analysis.importance_scores` and for both Fisher informations, and the neuron-level
    statistics of both hidden layers. With ``train=False`` an analysis that is not cached is not
    computed: the result is ``None``.
    """
    config = {**_run_config(protocol, run), "analysis": {"n_samples": n_samples, "fractions": LESION_FRACTIONS}}
    if cache and (stored := load_cached("analysis", config)) is not None:
        return stored
    if not train:
        return None
    state = load_state(run, protocol)
    if state is None:
        run_energy([run], protocol, force=True)
        state = load_state(run, protocol)
    weights, biases, probs = state["weights"], state["biases"], state["probs"]
    task = make_benchmark(protocol.benchmark, subset=protocol.subset).tasks[0]
    important = [p >= analysis.IMPORTANT for p in probs]
    flat_p = torch.cat([p.flatten() for p in probs])
    flat_w = torch.cat([w.abs().flatten() for w in weights])
    flat_i = flat_p >= analysis.IMPORTANT
    fishers = {kind: analysis.empirical_fisher(weights, biases, task.test_x, task.test_y, labels=kind, seed=run.seed)
               for kind in ("true", "model")}
    lesions = {order: analysis.importance_scores(order, weights, probs, seed=run.seed) for order in analysis.LESION_ORDERS}
    lesions |= {f"fisher_{kind}": f for kind, f in fishers.items()}
    result = {
        "p_histogram": _histogram(flat_p, P_BINS),
        "fraction_important": analysis.fraction_important(probs),
        "important_per_layer": [float(m.float().mean()) for m in important],
        "log_w_histogram": {"important": _histogram(flat_w[flat_i].log10(), LOG_W_BINS),
                            "other": _histogram(flat_w[~flat_i].log10(), LOG_W_BINS)},
        "energy_share_important": float(flat_w[flat_i].sum() / flat_w.sum()),
        "mean_w": {"important": float(flat_w[flat_i].mean()) if flat_i.any() else float("nan"),
                   "other": float(flat_w[~flat_i].mean())},
        "lesion": {order: analysis.lesion_accuracy(weights, probs, biases, scores, LESION_FRACTIONS, task.test_x,
                                                   task.test_y, seed=run.seed, n_samples=n_samples).tolist()
                   for order, scores in lesions.items()},
        "neurons": [],
        "fisher": {},
    }
    for layer in range(len(probs) - 1):
        n = analysis.neuron_importance(probs, layer, seed=run.seed)
        result["neurons"].append({
            "inputs": n.inputs.astype(int).tolist(), "outputs": n.outputs.astype(int).tolist(),
            "shuffled_histogram": np.bincount(n.shuffled_inputs.astype(int), minlength=probs[layer].shape[1] + 1).tolist(),
            "ks_statistic": n.ks_statistic, "ks_pvalue": n.ks_pvalue, "n_high": n.n_high, "n_low": n.n_low,
            "correlation": n.correlation,
        })
    for kind, fisher in fishers.items():
        flat_f = torch.cat([f.flatten() for f in fisher]).clamp_min(1e-30)
        result["fisher"][kind] = {
            "log_histogram": {"important": _histogram(flat_f[flat_i].log10(), LOG_F_BINS),
                              "other": _histogram(flat_f[~flat_i].log10(), LOG_F_BINS)},
            "spearman": float(stats.spearmanr(flat_p.numpy(), flat_f.numpy()).statistic),
            "pearson": float(np.corrcoef(flat_p.numpy(), flat_f.numpy())[0, 1]),
            "median_ratio": float(flat_f[flat_i].median() / flat_f[~flat_i].median()) if flat_i.any() else float("nan"),
        }
    if cache:
        store("analysis", config, result)
    return result
