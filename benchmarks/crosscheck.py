"""Cross-check the book's BGD and EWC against implementations written elsewhere, on the same tasks.

Not part of the test suite. On Permuted MNIST (the book's data, the permutations of ``lib.tasks``
with ``--permutation-seed``, every task permuted, a 784-200-200-10 network, ``--batch-size``) it trains

* ``bgd-reference``: BGD by the reference code, a checkout of ``igolan/bgd`` (``--bgd-checkout``),
  through its own model, initialisation, optimiser and training loop
  (``benchmarks/crosscheck_peers/bgd_reference.py``), with the book's BGD settings for the benchmark;
* ``avalanche-ewc``: EWC by Avalanche's ``EWCPlugin`` (PyPI ``avalanche-lib``), Adam as the book's EWC
  (``benchmarks/crosscheck_peers/avalanche_ewc.py``), with the book's penalty strength as written and
  with the one that matches the book's penalty (:math:`\lambda B/2`, see that file);
* ``ours``: the book's runs of the same methods at the same scale, through
  :func:`lib.continual.run_specs` with ``cache=False``.

Each peer runs in a virtual environment of its own that this script creates under ``--workdir``
(default /tmp/crosscheck) and reads the tasks from arrays this script exports there (the normalised
images, the labels and the permutations, ``.npy``). The scale is set by ``--tasks``, ``--epochs`` and
``--train-examples`` (the first N training and N test examples of every task). Writes one JSON,
``results/benchmarks/crosscheck.json`` by default, with per implementation and method the average
accuracy over all tasks after the last one and the accuracy of every task after each task.

Usage (from the repository root, with the project's environment)::

    python benchmarks/crosscheck.py --bgd-checkout /path/to/igolan-bgd --tasks 3 --train-examples 2000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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
IMPLEMENTATIONS = ("ours", "bgd-reference", "avalanche-ewc")
# Packages of each peer's environment: torch as this machine has it; the BGD reference's probes need
# pandas < 2 (they call DataFrame.append), and with it numpy < 2.
REQUIREMENTS = {
    "bgd-reference": ["torch==2.14.1", "numpy<2", "pandas<2"],
    "avalanche-ewc": ["torch==2.14.1", "avalanche-lib"],
}


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
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
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
    """The book's BGD (as chapter 5 runs it, and with the reference's initial means and inference) and EWC."""
    protocol = LifelongProtocol("perm_mnist", epochs=args.epochs, batch_size=args.batch_size,
                                subset=args.train_examples, permutation_seed=args.permutation_seed)
    specs = {
        "bgd": RunSpec("bgd", args.seed),
        "bgd (reference initial means and test_mc inference)": RunSpec(
            "bgd", args.seed, (("mean_init", "reference"), ("mc_inference", "average_accuracy"))),
        "ewc": RunSpec("ewc", args.seed),
    }
    results = {}
    for label, spec in specs.items():
        start = time.perf_counter()
        result = run_specs(protocol, [spec], cache=False, benchmark=bench, progress=False)[0]
        run = method_config(spec.method, protocol.benchmark, spec.seed, **dict(spec.overrides))
        results[label] = {"settings": run.describe(), "protocol": protocol.describe(), "accuracy": result["accuracy"],
                          "average": result["average"], "wall_seconds": time.perf_counter() - start}
        print(f"crosscheck: ours {label}: average accuracy {result['average']:.4f}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crosscheck"),
                        help="where the peers' environments, the exported tasks and the logs go")
    parser.add_argument("--bgd-checkout", type=Path, default=None, help="a checkout of igolan/bgd")
    parser.add_argument("--only", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per task")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="keep the first N training and N test examples of every task (default: all)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--permutation-seed", type=int, default=0)
    parser.add_argument("--peer-threads", type=int, default=1,
                        help="threads of each peer's torch (on a busy machine more threads can be much slower)")
    parser.add_argument("--out", type=Path, default=None, help="default: results/benchmarks/crosscheck.json")
    args = parser.parse_args()
    if "bgd-reference" in args.only and not (args.bgd_checkout and
                                             (args.bgd_checkout / "optimizers_lib" / "bgd_optimizer.py").is_file()):
        print(f"error: --bgd-checkout {args.bgd_checkout} is not a checkout of igolan/bgd "
              "(no optimizers_lib/bgd_optimizer.py); pass one, or leave bgd-reference out with --only", file=sys.stderr)
        return 2
    if not 1 <= args.tasks <= 10:
        parser.error("--tasks must lie in 1..10")
    out = args.out or results_root() / "benchmarks" / "crosscheck.json"
    data = args.workdir / "tasks"
    bench = export_tasks(data, args.tasks, args.train_examples, args.permutation_seed)
    bgd = method_config("bgd", "perm_mnist", args.seed)
    ewc = method_config("ewc", "perm_mnist", args.seed)
    common = ["--data", str(data), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
              "--seed", str(args.seed)]
    report = {
        "scale": {"benchmark": "perm_mnist", "tasks": args.tasks, "epochs_per_task": args.epochs,
                  "train_examples_per_task": args.train_examples or 60000,
                  "test_examples_per_task": args.train_examples or 10000, "batch_size": args.batch_size,
                  "network": [784, 200, 200, 10], "seed": args.seed, "permutation_seed": args.permutation_seed,
                  "every_task_permuted": True},
        "machine": machine(),
        "implementations": {},
    }
    failures = []
    if "bgd-reference" in args.only:
        try:
            python = environment(args.workdir, "bgd-reference")
            result = run_peer("bgd-reference", python, "bgd_reference.py", [
                "--checkout", str(args.bgd_checkout.resolve()), "--workdir", str(args.workdir / "logs"),
                "--std-init", str(bgd.std_init), "--mean-eta", str(bgd.mean_eta), "--mc-iters", str(bgd.mc_samples),
                "--test-mc-iters", "10", *common], args.workdir / "bgd_reference.json", args.workdir / "bgd_reference.log", args.peer_threads)
            report["implementations"]["igolan/bgd"] = {"bgd": result}
        except (RuntimeError, subprocess.CalledProcessError) as err:
            failures.append(f"bgd-reference: {err}")
    if "avalanche-ewc" in args.only:
        try:
            python = environment(args.workdir, "avalanche-ewc")
            lambdas = [ewc.ewc_lambda, ewc.ewc_lambda * args.batch_size / 2]  # as written; matched (avalanche_ewc.py)
            result = run_peer("avalanche-ewc", python, "avalanche_ewc.py", [
                "--ewc-lambda", *map(str, lambdas), "--lr", str(ewc.lr), *common],
                args.workdir / "avalanche_ewc.json", args.workdir / "avalanche_ewc.log", args.peer_threads)
            report["implementations"]["avalanche"] = {"ewc": result}
        except (RuntimeError, subprocess.CalledProcessError) as err:
            failures.append(f"avalanche-ewc: {err}")
    if "ours" in args.only:
        report["implementations"]["presynaptic-book"] = ours(bench, args)
    report["failures"] = failures
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(report, indent=1).encode())
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    print(f"crosscheck: wrote {out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
