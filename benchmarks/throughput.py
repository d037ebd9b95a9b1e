"""Training throughput of the presynaptic MLP (784-200-200-10, batch 100) on MNIST.

Prints, measured in this one process: the machine's dense-matmul GFLOP/s, a plain deterministic
PyTorch loop of the same MLP (nn.Linear + SGD: the floor the matmuls set), our engine for one
presynaptic run (eager and compiled) and for one BGD run, R runs batched into one computation
against R runs one after another, and the time of one stochastic pass over the test set. The plain loop, the presynaptic run and the BGD run are measured
side by side in several rounds; the ratios are the medians of the rounds' ratios, with their range.
Last, how the batched engine scales: samples/s in all for 1, 10, 100, ... runs trained together.
The record goes to ``results/benchmarks/throughput.json`` on the CPU, ``throughput-cuda.json`` on CUDA.
Usage: ``python benchmarks/throughput.py [--runs 18] [--steps 600] [--repeats 5] [--scaling 1 10 100]``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace

import torch

from lib.bgd import BGD_SETTINGS, BayesianMLP
from lib.data import write_atomic
from lib.cache import machine, results_root
from lib.model import StochasticMLP, presynaptic
from lib.tasks import Benchmark, Task, make_benchmark
from lib.compilation import compile_available
from lib.train import default_device, evaluate, fit

SIZES = [784, 200, 200, 10]
BATCH = 100
FLOP_PER_SAMPLE = 6 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # forward 2, backward 4 per weight


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return repeats * 2 * n**3 / (time.perf_counter() - start) / 1e9


def plain_loop(x: torch.Tensor, y: torch.Tensor, steps: int, device: torch.device) -> float:
    """Samples/s of a textbook deterministic PyTorch loop (autograd, torch.optim.SGD)."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(a, b) for a, b in zip(SIZES[:-1], SIZES[1:])]
    net = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(), layers[2]).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    order = torch.randperm(x.shape[0], device=device)

    def step(i: int) -> None:
        idx = order[(i * BATCH) % (x.shape[0] - BATCH):][:BATCH]
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()

    for i in range(20):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    return steps * BATCH / (time.perf_counter() - start)


def engine(task: Task, runs: int, steps: int, compile: bool, device: torch.device, bgd: bool = False) -> float:
    """Samples/s (summed over runs) of :func:`lib.train.fit` without evaluation (presynaptic or BGD runs)."""
    n = steps * BATCH
    part = Benchmark("throughput", (Task("mnist", task.train_x[:n], task.train_y[:n], task.test_x, task.test_y),), 10)
    warm = Benchmark("warm-up", (Task("mnist", task.train_x[: 20 * BATCH], task.train_y[: 20 * BATCH], task.test_x, task.test_y),), 10)

    def network() -> StochasticMLP:
        if bgd:
            return BayesianMLP(SIZES, [replace(BGD_SETTINGS["perm_mnist"], seed=s) for s in range(runs)], device)
        return StochasticMLP(SIZES, [presynaptic(seed=s) for s in range(runs)], device)

    seconds = []
    for bench in (warm, part):
        net = network()
        step = net.train_step if bgd else None
        seconds.append(fit(net, bench, epochs=1, eval_every="never", compile=compile, progress=False, step=step).seconds)
        sync(device)
    return runs * steps * BATCH / seconds[-1]


def test_pass_seconds(task: Task, compile: bool, device: torch.device, passes: int = 10) -> float:
    """Seconds of one stochastic pass of one presynaptic run over the test set (one mask per 100 examples)."""
    net = StochasticMLP(SIZES, [presynaptic(seed=0)], device)
    evaluate(net, task.test_x, task.test_y, n_samples=1, compile=compile)  # warm-up (and compilation)
    sync(device)
    start = time.perf_counter()
    evaluate(net, task.test_x, task.test_y, n_samples=passes, compile=compile)
    sync(device)
    return (time.perf_counter() - start) / passes


def spread(values: list[float], spec: str = ",.0f") -> str:
    """Median and range of repeated measurements, as text (``spec`` formats each number)."""
    return f"{statistics.median(values):{spec}} (range {min(values):{spec}} to {max(values):{spec}})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=18, help="runs trained together in the batched measurement")
    parser.add_argument("--steps", type=int, default=600, help="mini-batch steps per measurement (600 = one epoch)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="rounds of the side-by-side measurements (plain loop, presynaptic, BGD)")
    parser.add_argument("--scaling", type=int, nargs="+", default=[1, 10, 100], metavar="R",
                        help="numbers of runs batched together in the scaling measurement (steps/5 steps each)")
    args = parser.parse_args()
    if min(args.runs, args.steps, args.repeats, *args.scaling) < 1:
        parser.error("--runs, --steps, --repeats and --scaling take positive numbers")
    device = default_device()
    task = make_benchmark("mnist", device=device).tasks[0]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU"
    print(f"device: {name}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    gflops = matmul_gflops(device)
    print(f"dense matmul (2048x2048): {gflops:.0f} GFLOP/s")
    compiled = compile_available()
    eager = engine(task, 1, args.steps, False, device)
    print(f"presynaptic, 1 run, eager: {eager:,.0f} samples/s")
    batch_steps = max(1, args.steps // args.runs * 3)
    batched = engine(task, args.runs, batch_steps, compiled, device)
    print(f"presynaptic, {args.runs} runs batched: {batched:,.0f} samples/s in all")
    bgd_samples = BGD_SETTINGS["perm_mnist"].mc_samples
    # The ratios are what the targets are about: each round measures the three loops one after the
    # other, and the ratios are taken within the round, so that a slower or faster spell of the
    # machine (other load, clock) moves numerator and denominator together.
    rounds: dict[str, list[float]] = {"plain": [], "presynaptic": [], "bgd": []}
    for k in range(args.repeats):
        rounds["plain"].append(plain_loop(task.train_x, task.train_y, args.steps, device))
        rounds["presynaptic"].append(engine(task, 1, args.steps, compiled, device))
        rounds["bgd"].append(engine(task, 1, max(1, args.steps // 5), compiled, device, bgd=True))
        print(f"round {k + 1}/{args.repeats}: plain loop {rounds['plain'][-1]:,.0f}, presynaptic "
              f"{rounds['presynaptic'][-1]:,.0f}, BGD {rounds['bgd'][-1]:,.0f} samples/s")
    presynaptic_ratio = [a / b for a, b in zip(rounds["presynaptic"], rounds["plain"])]
    bgd_ratio = [a / b for a, b in zip(rounds["bgd"], rounds["plain"])]
    plain, single = statistics.median(rounds["plain"]), statistics.median(rounds["presynaptic"])
    print(f"plain PyTorch loop (nn.Linear + SGD, deterministic): {spread(rounds['plain'])} samples/s")
    print(f"presynaptic, 1 run{', compiled' if compiled else ''}: {spread(rounds['presynaptic'])} samples/s")
    print(f"batched / sequential: {batched / single:.2f}x")
    print(f"presynaptic / plain loop: {spread(presynaptic_ratio, '.2f')} (target: 0.85)")
    print(f"BGD ({bgd_samples} Monte-Carlo samples), 1 run: {spread(rounds['bgd'])} samples/s; BGD / plain loop: "
          f"{spread(bgd_ratio, '.3f')} (target: 1/{bgd_samples} = {1 / bgd_samples:.2g})")
    test_pass = {c: test_pass_seconds(task, c, device) for c in dict.fromkeys((False, compiled))}
    print(f"one stochastic pass over the {task.test_x.shape[0]:,} test examples ({task.test_x.shape[0] // 100} masks): "
          + ", ".join(f"{seconds * 1e3:.0f} ms ({'compiled' if c else 'eager'})" for c, seconds in test_pass.items()))
    scaling = {runs: engine(task, runs, max(1, args.steps // 5), compiled, device) for runs in args.scaling}
    print("batched engine, samples/s in all: " + ", ".join(f"{r} run{'s' if r > 1 else ''} {rate:,.0f}" for r, rate in scaling.items()))
    single_peak, plain_peak = (rate * FLOP_PER_SAMPLE / 1e9 / gflops for rate in (single, plain))
    print(f"share of the matmul peak: presynaptic {single_peak:.1%}, plain loop {plain_peak:.1%} "
          f"({FLOP_PER_SAMPLE / 1e6:.2f} MFLOP per training sample)")
    measured = {
        "device": f"{machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "rounds of the side-by-side measurement": args.repeats,
        "dense matmul (GFLOP/s)": round(gflops),
        "plain PyTorch loop (samples/s, median)": round(plain),
        "presynaptic, 1 run (samples/s, median)": round(single),
        "presynaptic, 1 run, eager (samples/s)": round(eager),
        f"presynaptic, {args.runs} runs batched (samples/s in all)": round(batched),
        "batched / sequential": round(batched / single, 2),
        "presynaptic / plain loop (median of the rounds)": round(statistics.median(presynaptic_ratio), 2),
        "presynaptic / plain loop (range)": [round(min(presynaptic_ratio), 2), round(max(presynaptic_ratio), 2)],
        "plain loop / matmul peak": round(plain_peak, 3),
        "presynaptic / matmul peak": round(single_peak, 3),
        f"BGD, {bgd_samples} samples, 1 run (samples/s, median)": round(statistics.median(rounds["bgd"])),
        "BGD / plain loop (median of the rounds)": round(statistics.median(bgd_ratio), 3),
        "BGD / plain loop (range)": [round(min(bgd_ratio), 3), round(max(bgd_ratio), 3)],
        **{f"one test pass{', compiled' if c else ''} (ms)": round(seconds * 1e3, 1) for c, seconds in test_pass.items()},
        **{f"presynaptic, {r} run{'s' if r > 1 else ''} batched (samples/s in all)": round(rate)
           for r, rate in scaling.items()},
    }
    record = "throughput-cuda.json" if device.type == "cuda" else "throughput.json"
    write_atomic(results_root() / "benchmarks" / record, json.dumps(measured, indent=1).encode())


if __name__ == "__main__":
    main()
