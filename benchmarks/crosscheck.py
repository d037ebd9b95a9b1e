"""Cross-check the book's BGD, EWC and presynaptic model against implementations written elsewhere, on the same tasks.

Not part of the test suite. On Permuted MNIST (the book's data, the permutations of ``lib.tasks``
with ``--permutation-seed``, every task permuted, a 784-200-200-10 network, ``--batch-size``) it trains,
once per seed of ``--seeds``,

* ``bgd-reference``: BGD by the reference code, a checkout of ``igolan/bgd`` (``--bgd-checkout``),
  through its own model, initialisation, optimiser and training loop
  (``benchmarks/crosscheck_peers/bgd_reference.py``), with the book's BGD settings for the benchmark;
* ``avalanche-ewc``: EWC by Avalanche's ``EWCPlugin`` (PyPI ``avalanche-lib``), Adam as the book's EWC
  (``benchmarks/crosscheck_peers/avalanche_ewc.py``), with the book's penalty strength as written and
  with the one that matches the book's penalty (:math:`\\lambda B/2`, see that file);
* ``authors-presynaptic``: the authors' presynaptic model, a checkout of
  ``smonsays/presynaptic-stochasticity`` (``--authors-checkout``), through the routine of their
  ``run_dyn_continual.py`` with their Permuted MNIST configuration ``etc/dyn_perm_mnist.json``
  (``benchmarks/crosscheck_peers/authors_presynaptic.py``), ``--presynaptic-epochs`` epochs per task;
* ``ours``: the book's runs of the same methods at the same scale, through
  :func:`lib.continual.run_specs` with ``cache=False`` (all seeds of one kind of network as one batch).

Each peer runs in a virtual environment of its own that this script creates under ``--workdir``
(default /tmp/crosscheck) and reads the tasks from arrays this script exports there (the normalised
images, the labels and the permutations, ``.npy``), so every implementation sees the same examples under
the same permutations. The scale is set by ``--tasks``, ``--epochs`` (BGD and EWC),
``--presynaptic-epochs`` and ``--train-examples`` (the first N training and N test examples of every
task). ``--only`` and ``--methods`` restrict what is trained.

Writes one JSON, ``results/benchmarks/crosscheck.json`` by default: per implementation, run and seed the
accuracy of every task after each task and the average accuracy over all tasks after the last one, and
the list of comparisons that :mod:`lib.crosscheck` turns into a table. Runs already in that file at the
same scale and not trained again are kept, so parts may be trained by separate invocations (even at the
same time: the file is merged under a lock when written).

Usage (from the repository root, with the project's environment; the stored result)::

    python benchmarks/crosscheck.py --bgd-checkout /path/to/igolan-bgd \\
        --authors-checkout /path/to/presynaptic-stochasticity --tasks 10 --train-examples 2000 \\
        --epochs 1 --presynaptic-epochs 10 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np

from lib.continual import LifelongProtocol, RunSpec, method_config, run_specs
from lib.data import load, write_atomic
from lib.cache import machine, results_root
from lib.tasks import Benchmark, normalise, permutations, make_benchmark

HERE = Path(__file__).resolve().parent
PEERS = HERE / "crosscheck_peers"
IMPLEMENTATIONS = ("ours", "bgd-reference", "avalanche-ewc", "authors-presynaptic")
METHODS = ("bgd", "ewc", "presynaptic")
PEER_METHOD = {"bgd-reference": "bgd", "avalanche-ewc": "ewc", "authors-presynaptic": "presynaptic"}
# Names of the implementations in the JSON.
OURS, IGOLAN, AVALANCHE, AUTHORS = "presynaptic-book", "igolan/bgd", "avalanche", "smonsays/presynaptic-stochasticity"
# Packages of each peer's environment: torch as this machine has it; the BGD reference's probes need
# pandas < 2 (they call DataFrame.append), and with it numpy < 2; the authors' modules import torchvision
# (their data sets), scipy and torch's TensorBoard writer at import time.
REQUIREMENTS = {
    "bgd-reference": ["torch==2.14.1", "numpy<2", "pandas<2"],
    "avalanche-ewc": ["torch==2.14.1", "avalanche-lib"],
    "authors-presynaptic": ["torch==2.14.1", "torchvision", "scipy", "tensorboard"],
}
# The book's runs of each method (label: overrides of the method's settings).
OUR_RUNS = {
    "bgd": {
        "bgd": (),
        "bgd (reference initial means)": (("mean_init", "reference"),),
        "bgd (reference initial means and test_mc inference)": (("mean_init", "reference"),
                                                                 ("mc_inference", "average_accuracy")),
    },
    "ewc": {"ewc": ()},
    "presynaptic": {"presynaptic": ()},
}


def comparisons(ewc_lambdas: dict[str, float]) -> list[dict]:
    """The rows of the cross-check table: which run and measure of ours against which of a peer.

    A measure is a path of keys into a seed's result ("final_by_inference/test_mc/average")."""
    def side(implementation: str, run: str, measure: str = "average") -> dict:
        return {"implementation": implementation, "run": run, "measure": measure}
    return [
        {"name": "BGD, reference initial means, averaged single-pass accuracy (test_mc)", "method": "bgd",
         "ours": side(OURS, "bgd (reference initial means and test_mc inference)"),
         "peer": side(IGOLAN, "bgd", "final_by_inference/test_mc/average")},
        {"name": "BGD, reference initial means, averaged softmax (agg_softmax)", "method": "bgd",
         "ours": side(OURS, "bgd (reference initial means)"),
         "peer": side(IGOLAN, "bgd", "final_by_inference/agg_softmax/average")},
        {"name": "BGD as in chapter 5 (PyTorch's initial means, averaged softmax)", "method": "bgd",
         "ours": side(OURS, "bgd"), "peer": side(IGOLAN, "bgd", "final_by_inference/agg_softmax/average")},
        {"name": f"EWC, Avalanche's lambda = lambda B/2 = {ewc_lambdas['matched']:g} (matched)", "method": "ewc",
         "ours": side(OURS, "ewc"), "peer": side(AVALANCHE, "ewc", f"runs/{ewc_lambdas['matched']!r}/average")},
        {"name": f"EWC, Avalanche's lambda = {ewc_lambdas['as written']:g} (unscaled)", "method": "ewc",
         "ours": side(OURS, "ewc"), "peer": side(AVALANCHE, "ewc", f"runs/{ewc_lambdas['as written']!r}/average")},
        {"name": "presynaptic model, Permuted MNIST settings", "method": "presynaptic",
         "ours": side(OURS, "presynaptic"), "peer": side(AUTHORS, "presynaptic")},
    ]


def export_tasks(folder: Path, n_tasks: int, examples: int | None, permutation_seed: int) -> Benchmark:
    """Write the normalised MNIST images, labels and the first ``n_tasks`` permutations as ``.npy`` and
    return the book's benchmark of the same tasks (checked to be the exported arrays, permuted)."""
    raw = load("mnist")
    arrays = {
        "train_x": normalise(raw.train_images[:examples], "mnist").numpy(),
        "train_y": raw.train_labels[:examples].numpy(),
        "test_x": normalise(raw.test_images[:examples], "mnist").numpy(),
        "test_y": raw.test_labels[:examples].numpy(),
        "permutations": np.stack([p.numpy() for p in permutations(permutation_seed)[:n_tasks]]),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():  # atomically: another invocation's peer may be reading them
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".npy", delete=False) as part:
            np.save(part, array)
        os.replace(part.name, folder / f"{name}.npy")
    bench = make_benchmark("perm_mnist", seed=permutation_seed, subset=examples)
    bench = Benchmark(bench.name, bench.tasks[:n_tasks], bench.n_classes)
    for task, perm in zip(bench.tasks, arrays["permutations"]):
        if not (np.array_equal(task.train_x.numpy(), arrays["train_x"][:, perm])
                and np.array_equal(task.test_y.numpy(), arrays["test_y"])):
            raise RuntimeError("the exported arrays are not the book's tasks")
    return bench


def environment(workdir: Path, name: str) -> Path:
    """The python of the peer's own virtual environment, created (once) with its packages."""
    folder = workdir / f"venv-{name}"
    python = folder / "bin" / "python"
    done = folder / "installed.txt"
    wanted = " ".join(REQUIREMENTS[name])
    if not (done.is_file() and done.read_text() == wanted):
        print(f"crosscheck: creating {folder} with {wanted}", file=sys.stderr)
        venv.create(folder, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS[name]], check=True)
        done.write_text(wanted)
    return python


def run_peer(name: str, python: Path, script: str, arguments: list[str], out: Path, log: Path, threads: int) -> dict:
    """Run one peer script with ``threads`` threads, its output copied to ``log``; returns the JSON it wrote."""
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with log.open("w") as stream:
        process = subprocess.run([str(python), str(PEERS / script), *arguments, "--out", str(out)],
                                 stdout=stream, stderr=subprocess.STDOUT, env=env)
    if process.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{name} failed (exit {process.returncode}): {tail[0]}; full log in {log}")
    result = json.loads(out.read_text())
    result["wall_seconds"] = time.perf_counter() - start
    print(f"crosscheck: {name}: {log.read_text().strip().splitlines()[-1]}", file=sys.stderr)
    return result


def ours(bench: Benchmark, args: argparse.Namespace) -> dict:
    """The book's runs of the selected methods, every seed: {label: {seed: result}}. The runs of one method
    train as one batch (a run's numbers do not depend on the runs it trains with); a run's
    ``wall_seconds`` is its batch's wall time divided by the batch's runs."""
    results: dict[str, dict[str, dict]] = {}
    for method in args.methods:
        epochs = args.presynaptic_epochs if method == "presynaptic" else args.epochs
        protocol = LifelongProtocol("perm_mnist", epochs=epochs, batch_size=args.batch_size,
                                    subset=args.train_examples, permutation_seed=args.permutation_seed)
        keys = [(label, seed) for label in OUR_RUNS[method] for seed in args.seeds]
        specs = [RunSpec(method, seed, OUR_RUNS[method][label]) for label, seed in keys]
        start = time.perf_counter()
        fresh = run_specs(protocol, specs, cache=False, benchmark=bench, progress=False)
        seconds = time.perf_counter() - start
        for (label, seed), spec, result in zip(keys, specs, fresh):
            results.setdefault(label, {})[str(seed)] = {
                "settings": spec.config("perm_mnist").describe(), "protocol": protocol.describe(),
                "accuracy": result["accuracy"], "average": result["average"], "wall_seconds": seconds / len(specs)}
            print(f"crosscheck: ours {label}, seed {seed}: average accuracy {result['average']:.4f}", file=sys.stderr)
        print(f"crosscheck: ours {method}: {len(specs)} runs in {seconds:.0f} s", file=sys.stderr)
    return results


def scale(args: argparse.Namespace) -> dict:
    """What every stored run shares (the seeds apart)."""
    return {"benchmark": "perm_mnist", "tasks": args.tasks,
            "epochs_per_task": {"bgd": args.epochs, "ewc": args.epochs, "presynaptic": args.presynaptic_epochs},
            "train_examples_per_task": args.train_examples or 60000,
            "test_examples_per_task": args.train_examples or 10000, "batch_size": args.batch_size,
            "network": [784, 200, 200, 10], "permutation_seed": args.permutation_seed, "every_task_permuted": True}


def check_output(out: Path, wanted: dict, replace: bool) -> str | None:
    """Why results cannot be written to ``out`` (None when they can), checked before any training."""
    if out.is_dir():
        return f"--out {out} is a directory"
    try:  # create its folder and a file in it, as writing the result will
        out.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out.parent).close()
    except OSError as err:
        return f"--out {out} cannot be written ({err})"
    if out.exists() and not replace:
        try:
            stored = json.loads(out.read_text())
        except (OSError, ValueError) as err:
            return f"--out {out} exists and is not a readable JSON ({err}); pass --replace to overwrite it"
        if stored.get("scale") != wanted:
            return (f"--out {out} holds results at another scale ({stored.get('scale')}); "
                    "pass another --out, or --replace to overwrite it")
    return None


def merge(out: Path, fresh: dict, replace: bool) -> dict:
    """``fresh`` written to ``out`` with the runs (implementation, run, seed) of the stored file that
    ``fresh`` does not have; its folder is locked while the file is read and written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(out.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored = {} if replace or not out.exists() else json.loads(out.read_text())
        if stored.get("scale") not in (None, fresh["scale"]):
            raise RuntimeError(f"{out} now holds results at another scale; nothing written")
        report = {**fresh, "implementations": stored.get("implementations", {}), "sources": stored.get("sources", {}),
                  "failures": stored.get("failures", {}), "wall_seconds": stored.get("wall_seconds", {})}
        for implementation, runs in fresh["implementations"].items():
            for label, seeds in runs.items():
                report["implementations"].setdefault(implementation, {}).setdefault(label, {}).update(seeds)
        for key in ("sources", "failures", "wall_seconds"):
            report[key].update(fresh[key])
        report["seeds"] = sorted({int(s) for runs in report["implementations"].values() for seeds in runs.values()
                                  for s in seeds})
        report["failures"] = {k: v for k, v in report["failures"].items() if v}
        write_atomic(out, json.dumps(report, indent=1).encode())
    finally:
        os.close(lock)  # releases the lock
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crosscheck"),
                        help="where the peers' environments, the exported tasks, the peers' outputs and logs go")
    parser.add_argument("--bgd-checkout", type=Path, default=None, help="a checkout of igolan/bgd")
    parser.add_argument("--authors-checkout", type=Path, default=None,
                        help="a checkout of smonsays/presynaptic-stochasticity")
    parser.add_argument("--only", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per task of BGD and EWC")
    parser.add_argument("--presynaptic-epochs", type=int, default=10, help="epochs per task of the presynaptic model")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="keep the first N training and N test examples of every task (default: all)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--permutation-seed", type=int, default=0)
    parser.add_argument("--peer-threads", type=int, default=1,
                        help="threads of each peer's torch (on a busy machine more threads can be much slower)")
    parser.add_argument("--out", type=Path, default=None, help="default: results/benchmarks/crosscheck.json")
    parser.add_argument("--replace", action="store_true",
                        help="overwrite --out instead of keeping the runs in it that are not trained again")
    args = parser.parse_args()
    if not 1 <= args.tasks <= 10:
        parser.error("--tasks must lie in 1..10")
    for name in ("epochs", "presynaptic_epochs", "batch_size", "peer_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.train_examples is not None and not 1 <= args.train_examples <= 10000:
        parser.error("--train-examples must lie in 1..10000 (the test set has 10,000 examples)")
    if min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must be distinct non-negative integers")
    args.seeds = sorted(args.seeds)
    peers = [p for p in IMPLEMENTATIONS[1:] if p in args.only and PEER_METHOD[p] in args.methods]
    checkouts = {"bgd-reference": (args.bgd_checkout, "optimizers_lib/bgd_optimizer.py", "--bgd-checkout", "igolan/bgd"),
                 "authors-presynaptic": (args.authors_checkout, "run_dyn_continual.py", "--authors-checkout",
                                         "smonsays/presynaptic-stochasticity")}
    for peer in peers:
        if peer in checkouts:
            folder, marker, option, repository = checkouts[peer]
            if not (folder and (folder / marker).is_file() and (peer != "authors-presynaptic"
                                                                 or (folder / "etc" / "dyn_perm_mnist.json").is_file())):
                print(f"error: {option} {folder} is not a checkout of {repository} (no {marker}); "
                      f"pass one, or leave {peer} out with --only", file=sys.stderr)
                return 2
    out = args.out or results_root() / "benchmarks" / "crosscheck.json"
    wanted = scale(args)
    if (problem := check_output(out, wanted, args.replace)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    # The exported tasks, the peers' outputs and logs of this scale (environments are shared by all scales).
    folder = args.workdir / f"perm_mnist-{args.tasks}x{args.train_examples or 'all'}-p{args.permutation_seed}"
    data = folder / "tasks"
    bench = export_tasks(data, args.tasks, args.train_examples, args.permutation_seed)
    bgd = method_config("bgd", "perm_mnist", 0)
    ewc = method_config("ewc", "perm_mnist", 0)
    lambdas = {"as written": ewc.ewc_lambda, "matched": ewc.ewc_lambda * args.batch_size / 2}  # avalanche_ewc.py
    common = ["--data", str(data), "--batch-size", str(args.batch_size)]
    peer_calls = {
        "bgd-reference": (IGOLAN, "bgd", "bgd_reference.py", lambda seed: [
            "--checkout", str(args.bgd_checkout.resolve()) if args.bgd_checkout else "",
            "--workdir", str(folder / "logs"), "--std-init", str(bgd.std_init), "--mean-eta", str(bgd.mean_eta),
            "--mc-iters", str(bgd.mc_samples), "--test-mc-iters", "10", "--epochs", str(args.epochs)]),
        "avalanche-ewc": (AVALANCHE, "ewc", "avalanche_ewc.py", lambda seed: [
            "--ewc-lambda", *map(repr, lambdas.values()), "--lr", str(ewc.lr), "--epochs", str(args.epochs)]),
        "authors-presynaptic": (AUTHORS, "presynaptic", "authors_presynaptic.py", lambda seed: [
            "--checkout", str(args.authors_checkout.resolve()) if args.authors_checkout else "",
            "--epochs", str(args.presynaptic_epochs)]),
    }
    sources = {}
    for peer in peers:
        if peer in checkouts:
            try:
                commit = subprocess.run(["git", "-C", str(checkouts[peer][0]), "rev-parse", "HEAD"],
                                        capture_output=True, text=True)
            except OSError:  # no git
                commit = None
            sources[checkouts[peer][3]] = commit.stdout.strip() if commit and commit.returncode == 0 \
                else "unknown (not a git checkout)"
    report = {
        "scale": wanted,
        "sources": sources,
        "machine": machine(),
        "permutations": "shared: every implementation trains and tests on the arrays exported by this script "
                        "(the book's normalised images under the permutations of lib.tasks)",
        "ewc_lambdas": lambdas,
        "comparisons": comparisons(lambdas),
        "implementations": {},
        "failures": {},
        "wall_seconds": {},
    }
    for peer in peers:
        implementation, label, script, arguments = peer_calls[peer]
        try:
            python = environment(args.workdir, peer)
        except subprocess.CalledProcessError as err:
            report["failures"][peer] = f"installing its environment: {err}"
            continue
        start = time.perf_counter()
        for seed in args.seeds:
            try:
                result = run_peer(f"{peer}, seed {seed}", python, script,
                                  [*arguments(seed), *common, "--seed", str(seed)],
                                  folder / f"{peer}_seed{seed}.json", folder / f"{peer}_seed{seed}.log",
                                  args.peer_threads)
                report["implementations"].setdefault(implementation, {}).setdefault(label, {})[str(seed)] = result
                report["failures"][f"{peer}, seed {seed}"] = ""  # clears a failure stored by an earlier invocation
            except RuntimeError as err:
                report["failures"][f"{peer}, seed {seed}"] = str(err)
        report["wall_seconds"][f"{peer}, seeds {' '.join(map(str, args.seeds))}"] = time.perf_counter() - start
    if "ours" in args.only:
        start = time.perf_counter()
        report["implementations"][OURS] = ours(bench, args)
        report["wall_seconds"][f"ours ({', '.join(args.methods)}), seeds {' '.join(map(str, args.seeds))}"] = \
            time.perf_counter() - start
    merged = merge(out, report, args.replace)
    for failure in filter(None, report["failures"].values()):
        print(f"error: {failure}", file=sys.stderr)
    print(f"crosscheck: wrote {out} (seeds {merged['seeds']})", file=sys.stderr)
    return 1 if any(report["failures"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
